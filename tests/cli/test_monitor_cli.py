"""``phidice monitor plot LOG``: a record written by GradientMonitor(history_file=...) becomes a PNG; bad logs
and values are named."""

from __future__ import annotations

import json

import pytest
import torch

import phidice
from phidice.cli.main import main
from phidice.diagnostics.monitor_plot import read_history

pytest.importorskip("matplotlib")


def record(tmp_path, epochs=3):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 8, 8, generator=g, requires_grad=True)
    labels = torch.randint(0, 3, (4, 8, 8), generator=g)
    labels[:2][labels[:2] == 2] = 0
    loss = phidice.DiceLoss(phi="I", eps=1e-5, include_background=False)
    log = tmp_path / "monitor.jsonl"
    monitor = phidice.GradientMonitor(loss, log=False, spacing=(1.5, 1.5), history_file=log)
    optimizer = torch.optim.SGD([logits], lr=50.0)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss(logits, labels, monitor=monitor).backward()
        optimizer.step()
        monitor.epoch_end()
    return log, monitor


def test_plot_from_the_record(tmp_path, capsys):
    log, monitor = record(tmp_path)
    records = read_history(log)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[-1]["per_class"]["2"]["empty_predicted_volume"] == pytest.approx(
        monitor.history[-1]["per_class"][2]["empty_predicted_volume"]
    )
    assert main(["monitor", "plot", str(log)]) == 0
    png = log.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    out = tmp_path / "ml.png"
    assert main(["monitor", "plot", str(log), "-o", str(out), "--ml", "--values", "empty_predicted_volume"]) == 0
    assert out.is_file() and "3 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content,match",
    [
        ("not json\n", "monitor.jsonl:1: not a JSON line"),
        (json.dumps({"epoch": 0}) + "\n", "expected a GradientMonitor.compute"),
        ("\n", "no records"),
    ],
)
def test_bad_logs_are_named(tmp_path, capsys, content, match):
    log = tmp_path / "monitor.jsonl"
    log.write_text(content)
    assert main(["monitor", "plot", str(log)]) == 2
    assert match in capsys.readouterr().err


def test_bad_values_and_missing_file(tmp_path, capsys):
    log, _ = record(tmp_path, epochs=1)
    assert main(["monitor", "plot", str(log), "--values", "volume"]) == 2
    assert "--values: unknown ['volume']" in capsys.readouterr().err
    assert main(["monitor", "plot", str(tmp_path / "nope.jsonl")]) == 2
    assert "no file" in capsys.readouterr().err
