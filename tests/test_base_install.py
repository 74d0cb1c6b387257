"""`pip install phidice` is torch + numpy: with every optional package hidden, phidice imports, computes its
losses, and names the extra to install where a file or plot needs one (tests/base_install_check.py)."""

import subprocess
import sys
from pathlib import Path


def test_base_install_computes_losses():
    script = Path(__file__).with_name("base_install_check.py")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "torch and numpy only" in out.stdout
