"""The ``phidice`` command-line tool: one module per subcommand, registered in :mod:`phidice.cli.main`."""
