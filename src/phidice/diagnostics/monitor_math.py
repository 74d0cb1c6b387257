"""The arithmetic of :class:`phidice.GradientMonitor`, free of torch: the (K, C' + 1) rows of one batch from its
per-(b, c) sums (on any array namespace ``xp``: :data:`phidice.core.xp.TORCH` or the Keras one), the values
and the advice read from accumulated rows (plain Python). The PyTorch monitor and the Keras callback both run it.
"""

from __future__ import annotations

import logging
import math
import warnings
from numbers import Real
from typing import Any

from phidice.core.config import DEFAULT_EPS, DiceConfig
from phidice.core.types import DiceStats
from phidice.equations import entry_gradients, heuristic_eps_scale, subset_terms

__all__ = [
    "FLAG_RATIO",
    "ROWS",
    "SMALL_EPS",
    "VALUES",
    "advice_lines",
    "check_config",
    "check_spacing",
    "flat_values",
    "log_advice",
    "monitor_rows",
    "results_of",
    "values_of",
]

logger = logging.getLogger("phidice.monitor")

SMALL_EPS = DEFAULT_EPS  # the "negligible" ε recommended for missing labels
FLAG_RATIO = 0.01  # an empty map's |gradient| below 1 % of a non-empty map's y = 0 |gradient| is flagged

# the accumulated sums, one row each, in the state's (K, C' + 1) layout (last column: all classes)
ROWS = (
    "subsets",
    "empty_subsets",
    "grad",
    "grad_empty",
    "pred_empty",
    "pred_nonempty",
    "dice_nonempty",
    "target",
    "images",
    "entries",
    "unannotated",
    "empty_maps",
    "grad_empty_map",
    "pred_empty_map",
)
VALUES = (
    "empty_subset_fraction",
    "empty_gradient_share",
    "empty_predicted_volume",
    "nonempty_predicted_volume",
    "nonempty_dice",
    "unannotated_fraction",
    "expected_volume",
    "empty_map_fraction",
    "empty_map_gradient_share",
    "empty_map_predicted_volume",
)


def check_config(config: DiceConfig) -> None:
    """The loss options the monitor can follow: one gradient (``reduction`` "mean" or "sum") in L1 form."""
    if config.reduction == "none":
        raise ValueError(
            "loss has reduction='none': one loss per subset has no single gradient to monitor; use 'mean' or 'sum'"
        )
    if config.squared:
        raise ValueError(
            "loss has squared=True: its gradient at a voxel depends on ỹ there, which the sums "
            "Σỹ² do not give; the monitor needs the L1 relaxation (squared=False)"
        )


def monitor_rows(stats: DiceStats, counts, keep, annotated, config, smoothing, xp):
    """The (K, C' + 1) sums of one batch (rows :data:`ROWS`, in the sums' dtype) from its scored (B, C') sums.

    ``counts`` are the counted voxels N (broadcastable to (B, C')), ``keep`` (B, C') bool the entries in the loss
    (None: all), ``annotated`` (B, C') bool or None, ``smoothing`` ε and weights aligned with the scored classes;
    ``xp`` the array namespace of the sums.
    """
    phi = config.phi
    I, P, Y = stats
    one = xp.ones_like(I)
    k = one if keep is None else xp.float(keep, I)
    terms = subset_terms(stats, config, smoothing, keep=keep, xp=xp)
    d_inter, d_pred = entry_gradients(terms, config, xp)
    grad = k * (abs(d_pred) * xp.maximum(counts - Y, 0.0) + abs(d_inter + d_pred) * Y)
    kI, kP, kY = I * k, P * k, Y * k
    target_phi = phi.reduce(kY, xp)
    empty = xp.float(target_phi == 0, I) * one
    denominator = phi.reduce(kP, xp) + target_phi  # 0 only where Σỹ = Σy = 0 on φ, and then I = 0 too
    # only a denominator that is 0 (an empty φ, its Dice zeroed below) is replaced: a NaN one stays NaN
    dsc = one * (2 * phi.reduce(kI, xp) / xp.where(denominator == 0, 1.0, denominator)) * (1 - empty)
    w_all = k / xp.maximum(phi.reduce(k, xp), 1.0)  # each subset counted once over its kept entries
    w_class = k / xp.maximum(phi.sum_batch(k, xp), 1.0)  # ... once per class column it touches
    unannotated = one * 0.0 if annotated is None else 1 - xp.float(annotated, I)
    shared = (grad, grad * empty, kP * empty, kP * (1 - empty))
    empty_map = k * xp.float(Y == 0, I)  # one (image, class) map, whatever subset φ it belongs to
    tail = (kY, k, one, unannotated, empty_map, grad * empty_map, P * empty_map)

    def column(w):
        return (w, w * empty, *shared, w * dsc, *tail)

    per_class = [xp.sum(t, 0) for t in column(w_class)]  # (1, C') each
    overall = [xp.sum(xp.sum(t, 0), 1) for t in column(w_all)]  # (1, 1) each
    return xp.concat([xp.concat([a, b], 1) for a, b in zip(per_class, overall)], 0)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def values_of(sums: list[float], voxel_ml: float | None, missing: bool) -> dict:
    """The :data:`VALUES` of one column of accumulated rows (one class, or all)."""
    s = dict(zip(ROWS, sums))
    out: dict[str, Any] = {
        "empty_subset_fraction": _ratio(s["empty_subsets"], s["subsets"]),
        "empty_gradient_share": _ratio(s["grad_empty"], s["grad"]),
        "empty_predicted_volume": _ratio(s["pred_empty"], s["empty_subsets"]),
        "nonempty_predicted_volume": _ratio(s["pred_nonempty"], s["subsets"] - s["empty_subsets"]),
        "nonempty_dice": _ratio(s["dice_nonempty"], s["subsets"] - s["empty_subsets"]),
        "unannotated_fraction": _ratio(s["unannotated"], s["entries"]) if missing else None,
        "expected_volume": _ratio(s["target"], s["images"]),
        "empty_map_fraction": _ratio(s["empty_maps"], s["images"]),
        "empty_map_gradient_share": _ratio(s["grad_empty_map"], s["grad"]),
        "empty_map_predicted_volume": _ratio(s["pred_empty_map"], s["empty_maps"]),
    }
    if voxel_ml is not None:
        out["empty_predicted_volume_ml"] = out["empty_predicted_volume"] * voxel_ml
        out["nonempty_predicted_volume_ml"] = out["nonempty_predicted_volume"] * voxel_ml
        out["empty_map_predicted_volume_ml"] = out["empty_map_predicted_volume"] * voxel_ml
    return out


def results_of(table: list[list[float]], first: int, voxel_ml: float | None, missing: bool) -> dict:
    """A ``compute()`` result from accumulated rows (``table``: K lists of C' + 1 floats): the values of the last
    column overall, ``per_class[first + c]`` those of column c."""
    columns = list(zip(*table))
    out = values_of(list(columns[-1]), voxel_ml, missing)
    out["per_class"] = {first + c: values_of(list(col), voxel_ml, missing) for c, col in enumerate(columns[:-1])}
    return out


def check_spacing(spacing) -> float | None:
    """The volume of one voxel in ml from a spacing in mm (one value per spatial axis)."""
    if spacing is None:
        return None
    values = list(spacing) if hasattr(spacing, "__iter__") else [spacing]
    if not values or not all(
        isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and float(v) > 0 for v in values
    ):
        raise ValueError(f"spacing must be positive voxel sizes in mm, one per spatial axis; got {spacing!r}")
    return math.prod(float(v) for v in values) / 1000.0


def flat_values(result: dict, prefix: str = "", per_class: bool = True) -> dict[str, float]:
    """A :meth:`GradientMonitor.compute` result as flat ``name`` / ``name/class{c}`` floats (for loggers);
    undefined values (None) left out, NaN kept."""
    out = {f"{prefix}{k}": float(v) for k, v in result.items() if k in VALUES or k.endswith("_ml") if v is not None}
    if per_class:
        for c, values in result["per_class"].items():
            out.update({f"{prefix}{k}/class{c}": float(v) for k, v in values.items() if v is not None})
    return out


def log_advice(lines: list[str], epoch) -> None:
    """One ``logging`` line of the advice, and a ``warnings`` warning when a class is flagged as ignored."""
    logger.info("GradientMonitor epoch %s: %s", epoch, " | ".join(lines))
    flagged = [line for line in lines if "They are ignored" in line]
    if flagged:
        warnings.warn("; ".join(flagged), RuntimeWarning, stacklevel=3)


def _volume_text(v: float, ml: bool) -> str:
    return f"{v:.3g} ml" if ml else f"{v:.4g} voxels"


def _trend(now: float, before: float | None) -> str:
    if before is None or not math.isfinite(before) or not math.isfinite(now):
        return ""
    if now < 0.9 * before:
        return " and falling"
    return " and not falling" if now <= 1.1 * before else " and rising"


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


def _ignored(fraction: float, share: float) -> bool:
    """An empty subset gets < FLAG_RATIO of the |gradient| of a non-empty one, on average (0 < fraction < 1)."""
    per_empty, per_other = share / fraction, (1 - share) / (1 - fraction)
    return per_empty < FLAG_RATIO * per_other


def _not_finite(r: dict) -> bool:
    """A batch's probabilities were not finite (a NaN logit, or +Inf under a softmax): the predicted volumes or
    the Dice of subsets that exist are NaN (sums carry a NaN until the next reset)."""
    f = r["empty_subset_fraction"]
    values = ([r["empty_predicted_volume"]] if f > 0 else []) + (
        [r["nonempty_predicted_volume"], r["nonempty_dice"]] if f < 1 else []
    )
    return any(math.isnan(v) for v in values)


def advice_lines(result: dict, previous: dict | None, config, ml: bool = False) -> list[str]:
    """One line per class: what share of the subsets φ is empty, what share of Σ|∂L/∂ỹ| they receive (Eq. 4),
    what is predicted on them and whether it falls, and which Φ/ε (Eq. 5) fits the two readings of an empty
    map — truly empty or missing. An empty map is flagged as ignored when its share of the gradient is below
    :data:`~phidice.diagnostics.explain.FLAG_RATIO` (1 %) of a non-empty one's on average, as ``explain`` flags
    it; flagged lines say "ignored"."""
    key = "empty_predicted_volume_ml" if ml else "empty_predicted_volume"
    scale = heuristic_eps_scale(config.overlap)
    rule = "E[Σy]" if scale == 1 else f"{scale:.3g}·E[Σy]"
    lines = []
    for c, r in result["per_class"].items():
        f, share, volume = r["empty_subset_fraction"], r["empty_gradient_share"], r[key]
        if _not_finite(r):
            lines.append(
                f"class {c}: the predicted probabilities were not finite in a batch since the last reset (a NaN "
                f"logit, or +Inf under a softmax): its gradient and volume readings are NaN, no advice"
            )
            continue
        if not f > 0:
            lines.append(
                f"class {c}: no subset φ with an empty target (mean Dice of the others {r['nonempty_dice']:.3f})"
            )
            continue
        before = None if previous is None else previous["per_class"].get(c, {}).get(key)
        seen = (
            f"class {c}: {_pct(f)} of the subsets φ (Φ={config.phi.value}) have no label and receive "
            f"{_pct(share)} of the gradient; predicted volume on them is {_volume_text(volume, ml)}"
            f"{_trend(volume, before)}."
        )
        if f >= 1:
            lines.append(f"{seen} No subset of this class holds a label, so there is nothing to compare with.")
            continue
        heuristic = f"{scale * r['expected_volume']:.4g}"
        if _ignored(f, share):
            fix = (
                "ε ≈ " + rule + f" = {heuristic}"
                if config.phi.sums_batch
                else f"Φ=BI (B > 1) or ε ≈ {rule} = {heuristic}"
            )
            lines.append(
                f"{seen} They are ignored (Eq. 4: ε/(P + ε)² ≈ 0). If these labels are truly empty, use "
                f"{fix} (Eq. 5); if they are missing, this is what you want."
            )
        else:
            lines.append(
                f"{seen} The loss pushes them towards empty predictions. If these labels are truly empty, "
                f"this is what you want; if they are missing, use Φ=I with a negligible ε ({SMALL_EPS:g}) "
                f"or a missing-label loss (LeafDiceLoss with annotated)."
            )
    return lines
