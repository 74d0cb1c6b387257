"""What ``phidice ... --help`` prints: argparse %-formats ``help=`` strings but not ``description=`` strings."""

import argparse

import pytest

from phidice.cli.main import SUBCOMMANDS, build_parser, main


def help_text(argv, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


def test_explain_help_prints_percent_signs(capsys, monkeypatch):
    text = help_text(["explain"], capsys, monkeypatch)
    assert "flag classes whose empty maps get < 1% of a non-empty map's y=0 gradient" in text
    assert "(default: the target volume, with 50% overlap)" in text


@pytest.mark.parametrize("argv", [[]] + [[name] for name in SUBCOMMANDS], ids=["phidice", *SUBCOMMANDS])
def test_no_doubled_or_unformatted_percent(argv, capsys, monkeypatch):
    text = help_text(argv, capsys, monkeypatch)
    assert "%%" not in text and "%(" not in text


def test_evaluate_default_is_formatted(capsys, monkeypatch):
    assert "(default: phidice-evaluation)" in help_text(["evaluate"], capsys, monkeypatch)


def _parsers(parser, path=("phidice",)):
    """Every (command path, parser) of the CLI, nested subcommands included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_subcommand_has_help_text():
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"
