"""Entry point of the ``phidice`` command.

Each subcommand lives in its own module ``phidice.cli.<name>`` exposing ``add_parser(subparsers)``,
which registers the subparser and sets ``func`` (called with the parsed namespace, returns an exit code).
A subcommand module imports only argparse at its top; its ``run`` imports what the command needs, so
``phidice --help`` stays fast and works in the base install, and a missing extra is named when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from phidice import __version__

SUBCOMMANDS: tuple[str, ...] = ("reproduce", "epsilon", "explain", "evaluate", "nnunet")
EXTRAS = {
    "reproduce": "experiments",
    "epsilon": "io",
    "explain": "io",
    "evaluate": "eval",
    "nnunet": "nnunet",
}  # what each needs
SUBCOMMANDS += ("monitor",)
EXTRAS["monitor"] = "plots"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phidice", description="The Dice loss with explicit reduction subsets Φ and smoothing ε."
    )
    parser.add_argument("--version", action="version", version=f"phidice {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"phidice.cli.{name}").add_parser(sub)
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
    except ImportError as err:  # an optional dependency of this subcommand is not installed
        extra = EXTRAS.get(args.command, "all")
        hint = (
            ""
            if "pip install" in str(err)
            else (f"; this command needs the '{extra}' extra: pip install 'phidice[{extra}]'")
        )
        print(f"phidice {args.command}: error: {err}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
