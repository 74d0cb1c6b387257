"""phidice.progress: a tqdm bar on a terminal, plain lines (no carriage-return frames) in a non-interactive log."""

from __future__ import annotations

import io

import pytest

from phidice import progress as progress_module
from phidice.progress import progress

pytest.importorskip("tqdm")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_one_line_per_step_and_no_carriage_returns(monkeypatch):
    monkeypatch.setenv("PHIDICE_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    bar = progress(total=3, desc="grid", unit="run", file=log)
    for _ in range(3):
        bar.set_postfix(loss=0.25)
        bar.update()
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    assert [line.split(" [")[0] for line in text.splitlines()] == ["grid: 1/3 run", "grid: 2/3 run", "grid: 3/3 run"]
    assert "loss=0.25" in text.splitlines()[-1]


def test_lines_are_rate_limited_but_the_last_step_is_printed(monkeypatch):
    monkeypatch.setenv("PHIDICE_PROGRESS_INTERVAL", "3600")
    log = io.StringIO()
    items = list(progress(range(500), desc="train", unit="step", file=log))
    assert items == list(range(500))
    assert log.getvalue().splitlines()[0].startswith("train: 1/500 step")
    assert log.getvalue().splitlines()[-1].startswith("train: 500/500 step")
    assert len(log.getvalue().splitlines()) == 2


def test_a_terminal_keeps_the_tqdm_bar():
    from tqdm.auto import tqdm

    bar = progress(range(3), file=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()


def test_disable_prints_nothing():
    log = io.StringIO()
    assert list(progress(range(3), file=log, disable=True)) == [0, 1, 2]
    assert log.getvalue() == ""
    assert not progress_module._interactive(log)
