"""Entry point of the ``phidice`` command.

Each subcommand lives in its own module ``phidice.cli.<name>`` exposing ``add_parser(subparsers)``,
which registers the subparser and sets ``func`` (called with the parsed namespace, returns an exit code).
Modules are imported lazily, so ``phidice --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("reproduce", "epsilon", "explain", "evaluate", "nnunet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phidice",
        description="The Dice loss with explicit reduction subsets Φ and smoothing ε.",
    )
    from phidice import __version__

    parser.add_argument("--version", action="version", version=f"phidice {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"phidice.cli.{name}")
        except ModuleNotFoundError as err:  # a subcommand whose module is not there yet
            if err.name != f"phidice.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"phidice {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
