"""The phidice trainers' GradientMonitor: per epoch into nnU-Net's log, its logger (and so its checkpoint and
W&B), a ``phidice_monitor.png`` beside ``progress.png``, a JSON-lines record, and the phidice checkpoint record.

On by default (the cost is a few small (B, C) operations per step); ``PHIDICE_MONITOR=0`` turns it off, in the
way nnU-Net's own switches are environment variables. The monitor watches the full-resolution level of the
deep-supervision loss during training batches (validation batches are not counted).
"""

from __future__ import annotations

import math
import os

from phidice.diagnostics.monitor import GradientMonitor, find_loss
from phidice.diagnostics.monitor_plot import plot_history, write_history

__all__ = ["ENV", "LOGGED", "monitor_enabled", "build_monitor", "epoch_lines", "log_to_nnunet", "write_outputs"]

ENV = "PHIDICE_MONITOR"
LOGGED = ("empty_subset_fraction", "empty_gradient_share", "empty_predicted_volume")


def monitor_enabled() -> bool:
    value = os.environ.get(ENV, "1").strip().lower()
    if value not in ("0", "1", "false", "true", "off", "on", "no", "yes", ""):
        raise ValueError(f"{ENV} must be 0/1 (or false/true, off/on); got {os.environ[ENV]!r}")
    return value in ("1", "true", "on", "yes", "")


def build_monitor(loss, spacing) -> GradientMonitor:
    """A monitor of the full-resolution level of a :class:`~phidice.integrations.nnunet.loss.PhiDiceNNUNetLoss`."""
    levels = getattr(loss, "levels", None)
    return GradientMonitor(find_loss(levels[0] if levels is not None else loss), spacing=spacing, log=False)


def _fmt(v: float, percent: bool) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{100 * v:.3g} %" if percent else f"{v:.4g}"


def epoch_lines(result: dict, monitor: GradientMonitor) -> list[str]:
    """The three numbers per class for nnU-Net's log, then the advice."""
    ml = monitor.voxel_ml is not None
    key = "empty_predicted_volume_ml" if ml else "empty_predicted_volume"
    parts = [
        f"class {c}: empty φ {_fmt(r['empty_subset_fraction'], True)}, gradient share on them "
        f"{_fmt(r['empty_gradient_share'], True)}, predicted volume on them {_fmt(r[key], False)} "
        f"{'ml' if ml else 'voxels'}"
        for c, r in result["per_class"].items()
    ]
    return ["phidice monitor: " + "; ".join(parts), *("phidice advice: " + a for a in monitor.advise(result))]


def log_to_nnunet(logger, result: dict, epoch: int) -> None:
    """Each class's three numbers as lists (one per class, nnU-Net's per-class form) in nnU-Net's logger."""
    local = getattr(logger, "local_logger", logger)
    store = getattr(local, "my_fantastic_logging", None)
    if store is None:
        return
    for name in LOGGED:
        key = f"phidice_{name}"
        values = [float(r[name]) for r in result["per_class"].values()]
        series = store.setdefault(key, [])
        while len(series) < epoch:  # a run resumed from a checkpoint written before the monitor
            series.append([math.nan] * len(values))
        logger.log(key, values, epoch)


def write_outputs(output_folder: str, history: list[dict]) -> None:
    """``phidice_monitor.jsonl`` and ``phidice_monitor.png`` beside nnU-Net's ``progress.png``."""
    write_history(os.path.join(output_folder, "phidice_monitor.jsonl"), history)
    plot_history(history, os.path.join(output_folder, "phidice_monitor.png"))
