"""phidice.keras.GradientMonitorCallback in real ``model.fit`` runs, per back end: the values it logs into the
history equal :class:`phidice.GradientMonitor` on the same batches (training and validation), its JSON lines
are what ``phidice monitor plot`` reads, and bad input raises a clear error.

Tolerance: relative 1e-4 (the Keras state accumulates float32 rows on the host-less compiled step; the PyTorch
monitor float64 rows of float32 sums).
"""

from __future__ import annotations

import math
from pathlib import Path

import _keras_monitor_cases as M
import numpy as np
import pytest
import torch
from _keras_params import BACKENDS

import phidice
from phidice.diagnostics.monitor_math import VALUES
from phidice.diagnostics.monitor_plot import plot_history, read_history

REL = 1e-4


def _fit(keras_run, backend, name) -> dict:
    entry = keras_run(backend)["monitor"][name]
    assert "exception" not in entry, entry["exception"]
    return entry


def torch_monitor_result(name: str, logits: np.ndarray, labels: np.ndarray, batch: int) -> dict:
    """The PyTorch monitor's compute() over ``logits`` (channels-last, as Keras gave them) in batches."""
    kind, options, supersets = M.FITS[name]
    loss = getattr(phidice, kind)(**options)
    monitor = phidice.GradientMonitor(loss, log=False)
    x_all = torch.from_numpy(np.moveaxis(logits, -1, 1).copy())
    y_all = torch.from_numpy(labels.astype(np.int64))
    for start in range(0, len(x_all), batch):
        x, y = x_all[start : start + batch], y_all[start : start + batch]
        if supersets is not None:
            y, annotated = phidice.annotated_from_label_sets(y, supersets, M.C)
            loss(x, y, annotated, monitor=monitor)
        else:
            loss(x, y, monitor=monitor)
    return monitor.compute()


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)


def assert_same_values(got: dict, want: dict) -> None:
    wrong = [(k, got[k], want[k]) for k in VALUES if not _same(got[k], want[k])]
    assert set(got["per_class"]) == set(want["per_class"])
    for c, values in want["per_class"].items():
        mine = got["per_class"][c]
        wrong += [(f"{k}/class{c}", mine[k], v) for k, v in values.items() if not _same(mine[k], v)]
    assert not wrong, wrong


@pytest.mark.parametrize("name", list(M.FITS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_values_equal_the_pytorch_monitor(keras_run, backend, name):
    """Every value, overall and per class, of each epoch (training) and of the validation data, against the
    PyTorch monitor fed the same logits in the same batches; the history holds them under phidice/…"""
    entry = _fit(keras_run, backend, name)
    x, labels, xv, lv = M.data(name)
    want = torch_monitor_result(name, entry["logits"], labels, M.BATCH)
    want_val = torch_monitor_result(name, entry["val_logits"], lv, M.BATCH)
    assert want["empty_subset_fraction"] > 0 and want["nonempty_dice"] > 0  # the data exercise the values
    assert [h["epoch"] for h in entry["monitor"]] == list(range(M.EPOCHS))
    for got, got_val in zip(entry["monitor"], entry["val_monitor"]):
        assert_same_values(got, want)
        assert_same_values(got_val, want_val)
    history = entry["history"]
    for c, values in want["per_class"].items():
        for k, v in values.items():
            if v is not None:
                assert _same(history[f"phidice/{k}/class{c}"][-1], v), (k, c)
                assert _same(history[f"val_phidice/{k}/class{c}"][-1], want_val["per_class"][c][k]), (k, c)
    assert all(len(v) == M.EPOCHS for v in history.values())
    assert _same(history["phidice/empty_gradient_share"][0], want["empty_gradient_share"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_label_values_and_advice(keras_run, backend):
    """The leaf Dice reports its unannotated share; Φ = I with a small ε: empty class-2 maps are flagged as
    ignored by the advice, as the PyTorch monitor says."""
    entry = _fit(keras_run, backend, "leaf_supersets")
    result = entry["monitor"][-1]
    assert result["per_class"][2]["unannotated_fraction"] == pytest.approx(1 / 6)  # image 3 of 6
    assert any(line.startswith("class 2:") and "ignored" in line for line in entry["advice"]), entry["advice"]
    assert _fit(keras_run, backend, "dice_I")["monitor"][-1]["unannotated_fraction"] is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_file_is_what_monitor_plot_reads(keras_run, backend, tmp_path):
    entry = _fit(keras_run, backend, "dice_ce_BI")
    records = read_history(entry["file"])
    assert len(records) == M.EPOCHS
    assert records[-1]["empty_gradient_share"] == pytest.approx(entry["monitor"][-1]["empty_gradient_share"])
    assert sorted(records[-1]["per_class"]) == ["1", "2"]  # include_background=False: classes 1 and 2
    png = plot_history(records, tmp_path / "monitor.png")
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_gives_clear_errors(keras_run, backend):
    got = keras_run(backend)["monitor"]["errors"]
    expected = {
        "keras_loss": ("TypeError", "loss must be a phidice.keras Dice-family loss"),
        "focal": ("TypeError", "got phidice.keras.losses.DiceFocalLoss"),
        "none": ("ValueError", "reduction='none'"),
        "squared": ("ValueError", "squared=True"),
        "spacing": ("ValueError", "spacing must be positive voxel sizes"),
        "uncompiled": ("ValueError", "metrics=[monitor.metric]"),
    }
    for name, (kind, text) in expected.items():
        assert got[name] is not None, f"{name}: no error"
        assert got[name][0] == kind and text in got[name][1], (name, got[name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_block_of_docs_monitor_md(keras_run, backend):
    """docs/monitor.md's Keras block (as it reads now) ran in a real fit and put the values into the history."""
    entry = _fit(keras_run, backend, "doc")
    text = (Path(__file__).resolve().parents[2] / "docs" / "monitor.md").read_text()
    assert entry["block"] in text
    for key in ("phidice/empty_gradient_share/class2", "val_phidice/empty_predicted_volume/class2", "phidice_monitor"):
        assert key in entry["keys"], key
    assert len(read_history(entry["file"])) == 1
