"""A GradientMonitor's record over training: JSON lines of ``compute()`` results → one PNG of curves per class."""

from __future__ import annotations

import json
import math
from pathlib import Path

from phidice.core.deps import require
from phidice.io import atomic_write

__all__ = ["PLOTTED", "read_history", "write_history", "plot_history"]

PLOTTED = ("empty_predicted_volume", "empty_gradient_share", "empty_subset_fraction", "nonempty_dice")
TITLES = {
    "empty_predicted_volume": "predicted volume Σỹ on empty-target φ",
    "empty_gradient_share": "share of Σ|∂L/∂ỹ| on empty-target φ (Eq. 4)",
    "empty_subset_fraction": "share of subsets φ with an empty target",
    "nonempty_dice": "mean Dice of non-empty φ",
    "unannotated_fraction": "share of unannotated (image, class) entries",
}


def write_history(path, records: list[dict]) -> Path:
    """``records`` (``compute()`` / ``epoch_end()`` results) as JSON lines, written atomically."""
    return atomic_write(path, "".join(json.dumps(r, default=float) + "\n" for r in records))


def read_history(path) -> list[dict]:
    """The JSON lines of ``path``: one ``compute()`` result each (``per_class`` keys as in the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LOG: no file {str(path)!r}")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON line ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("per_class"), dict):
            raise ValueError(
                f"{path}:{n}: expected a GradientMonitor.compute() result (a JSON object with "
                f"'per_class'); got {line[:80]!r}"
            )
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def _x(records: list[dict]) -> tuple[list, str]:
    for key in ("epoch", "step"):
        if all(key in r for r in records):
            return [r[key] for r in records], key
    return list(range(len(records))), "record"


def _number(v) -> float:
    return math.nan if v is None else float(v)


def plot_history(records: list[dict], path, values=PLOTTED, ml: bool = False) -> Path:
    """One panel per value, one curve per class (and "all"), against the records' epoch (or step); PNG,
    written atomically. ``ml``: the predicted volume in ml where the records have it."""
    figure = require("matplotlib.figure", "plots", "the monitor plot")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"the plot must be a .png path; got {str(path)!r}")
    x, xlabel = _x(records)
    classes = sorted({c for r in records for c in r["per_class"]}, key=lambda c: int(c))
    fig = figure.Figure(figsize=(4.4 * len(values), 3.6))
    axes = fig.subplots(1, len(values), squeeze=False)[0]
    for ax, value in zip(axes, values):
        key = f"{value}_ml" if (ml and value == "empty_predicted_volume") else value
        for c in classes:
            ax.plot(x, [_number(r["per_class"].get(c, {}).get(key)) for r in records], marker=".", label=f"class {c}")
        ax.plot(x, [_number(r.get(key)) for r in records], "k--", label="all")
        ax.set_title(TITLES.get(value, value), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(
            key
            + (
                " (ml)"
                if key.endswith("_ml")
                else " (voxels)"
                if key == value and value == "empty_predicted_volume"
                else ""
            )
        )
        if value == "empty_gradient_share":
            ax.set_yscale("symlog", linthresh=1e-6)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
