import sys

from phidice.cli.main import main

sys.exit(main())
