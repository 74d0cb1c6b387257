"""The phidice trainers' monitor pieces on nnU-Net's loss: the full-resolution level is watched (not the coarser
ones), the numbers go into nnU-Net's own logger per class, the PNG and the record are written, the switch is
checked. The trainer hooks themselves run in the real nnU-Net training of test_nnunet_real_run.py."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H

from phidice.diagnostics.monitor import GradientMonitor
from phidice.integrations.nnunet.loss import PhiDiceNNUNetLoss
from phidice.integrations.nnunet.monitor import (
    ENV,
    build_monitor,
    epoch_lines,
    log_to_nnunet,
    monitor_enabled,
    write_outputs,
)
from phidice.integrations.nnunet.options import resolve_options
from phidice.integrations.nnunet.task import NNUNetTask


def test_full_resolution_level_is_watched_and_logged(tmp_path):
    task = NNUNetTask.from_label_dict(H.LABELS)
    loss = PhiDiceNNUNetLoss(resolve_options({"phi": "I"}, task), task, weights=tuple(H.ds_weights(3)))
    outputs, targets = H.make_case(task, B=3, shape=(16, 16), levels=3, seed=0)
    monitor = build_monitor(loss, spacing=(0.5, 0.5)).attach()
    loss(outputs, targets)
    assert monitor.updates == 1  # only level 0 reports
    direct = GradientMonitor(monitor.loss, log=False)
    direct.update(outputs[0], targets[0])
    result = monitor.epoch_end(epoch=0)
    want = direct.compute()
    assert result["empty_gradient_share"] == pytest.approx(want["empty_gradient_share"], rel=1e-9)
    lines = epoch_lines(result, monitor)
    assert lines[0].startswith("phidice monitor: class 1: empty φ") and "ml" in lines[0]
    write_outputs(str(tmp_path), monitor.history)
    assert (tmp_path / "phidice_monitor.png").stat().st_size > 5000
    assert json.loads((tmp_path / "phidice_monitor.jsonl").read_text().splitlines()[0])["epoch"] == 0


def test_numbers_in_nnunets_logger(tmp_path):
    task = NNUNetTask.from_label_dict(H.LABELS)
    loss = PhiDiceNNUNetLoss(resolve_options({"phi": "I"}, task), task)
    outputs, targets = H.make_case(task, B=3, shape=(16, 16), levels=None, seed=1)
    monitor = build_monitor(loss, spacing=(1.0, 1.0)).attach()
    loss(outputs, targets)
    result = monitor.epoch_end(epoch=0)
    logging = pytest.importorskip("nnunetv2.training.logging.nnunet_logger", reason="nnU-Net's logger needs seaborn")
    logger = (
        logging.MetaLogger(str(tmp_path), resume=False) if hasattr(logging, "MetaLogger") else logging.nnUNetLogger()
    )
    log_to_nnunet(logger, result, 0)
    assert logger.get_value("phidice_empty_subset_fraction", step=0) == [
        r["empty_subset_fraction"] for r in result["per_class"].values()
    ]


def test_switch(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert monitor_enabled()
    monkeypatch.setenv(ENV, "0")
    assert not monitor_enabled()
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ValueError, match="PHIDICE_MONITOR must be 0/1"):
        monitor_enabled()
