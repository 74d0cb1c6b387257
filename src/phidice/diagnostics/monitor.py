"""What Φ and ε do to empty maps while training: the Eq. 4 gradient, evaluated live from the loss's own sums.

With Eq. 4 the gradient of a Dice-family loss with respect to the probabilities ỹ takes, inside one subset φ
(and class c), one value g0 on the y = 0 voxels and one value g1 on the y = 1 voxels. Over the N counted
voxels of a (b, c) entry (mask and ``ignore_index`` aware) with target sum Y, Σ|∂L/∂ỹ| is therefore
|g0|·(N − Y) + |g1|·Y: exact for hard targets (labels or one-hot maps; for soft maps, an upper bound by
convexity), and read from the three per-(b, c) sums the loss has already computed — no second pass over the
volume. :class:`GradientMonitor` accumulates, per class and overall:

- ``empty_subset_fraction``: the share of subsets φ ∈ Φ whose target is empty;
- ``empty_gradient_share``: the share of Σ|∂L/∂ỹ| (the Dice-family term, every weight of the loss included)
  that falls on voxels of empty-target subsets;
- ``empty_predicted_volume``: the mean predicted volume Σỹ of an empty-target subset (voxels; ml too with a
  ``spacing``), and ``nonempty_predicted_volume`` that of the others, for comparison;
- ``nonempty_dice``: the mean soft Dice 2I/(P + Y) of the non-empty subsets;
- ``unannotated_fraction``: for the missing-label losses, the share of (image, class) entries not annotated;
- ``expected_volume``: E[Σy] per image (the Φ = I heuristic ε of Eq. 5, for the advice);
- ``empty_map_fraction``, ``empty_map_gradient_share``, ``empty_map_predicted_volume``: the same three for the
  (image, class) maps with an empty target, whatever subset they are in. Under Φ = I they equal the subset
  values; under Φ = BI an empty map inside a batch with labels is no empty subset, yet it is where the batch's
  push towards empty predictions lands (Sect. 2.2).

A subset is counted once per class column it touches: per class, φ of Φ = CI is the image (empty when the
whole image is), and under Φ = BI one φ per class and batch. For the marginal Dice, ỹ are the merged
probabilities of Shi et al. (unannotated classes summed into the background). Every state is a sum, reduced
across DDP ranks by one all-reduce in :meth:`GradientMonitor.compute` (under ``sync_batch`` every rank already
holds the global batch's sums and nothing is reduced).
"""

from __future__ import annotations

import logging
import math
import warnings
from numbers import Real
from typing import Any

import torch

from phidice import distributed
from phidice.core.checks import is_compiling
from phidice.core.types import DiceStats, drop_background
from phidice.core.xp import TORCH
from phidice.diagnostics.explain import FLAG_RATIO, SMALL_EPS
from phidice.diagnostics.monitor_plot import write_history
from phidice.equations import heuristic_eps_scale, subset_terms
from phidice.losses.base import align_smoothing
from phidice.losses.compound import DiceCELoss
from phidice.losses.dice import DiceLoss
from phidice.losses.gradient import entry_gradients
from phidice.missing.functional import leaf_keep
from phidice.missing.losses import _PartialDice

__all__ = ["GradientMonitor", "VALUES", "monitor_rows", "advice_lines", "find_loss", "flat_values"]

logger = logging.getLogger("phidice.monitor")

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
MONITORED = (DiceLoss, DiceCELoss, _PartialDice)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _counts(stats: DiceStats, prepared, shape, num_labels: bool) -> torch.Tensor:
    """N: the counted voxels per (b, c), (B, 1) or (B, C). Without a mask, the spatial size; for labels with
    C > 1 channels and a voxel mask, Σ_c Y (each counted voxel is labelled once: no pass over the mask);
    otherwise Σ m over the mask."""
    B = shape[0]
    mask = prepared.mask
    like = stats.target_sum
    if mask is None:
        return torch.full((B, 1), float(math.prod(shape[2:])), dtype=torch.float64, device=like.device)
    if num_labels and mask.shape[1] == 1:
        return like.detach().to(torch.float64).sum(1, keepdim=True)
    return mask.detach().to(torch.float64).reshape(B, mask.shape[1], -1).sum(-1)


def monitor_rows(stats: DiceStats, counts: torch.Tensor, keep, annotated, config, smoothing) -> torch.Tensor:
    """The (K, C' + 1) sums of one batch (rows :data:`ROWS`, float64) from its scored (B, C') sums.

    ``counts`` (B, C') are the counted voxels N, ``keep`` (B, C') bool the entries in the loss (None: all),
    ``annotated`` (B, C') bool or None, ``smoothing`` ε and weights aligned with the scored classes.
    """
    phi = config.phi
    I, P, Y = stats
    B, C = I.shape
    k = torch.ones_like(I) if keep is None else keep.to(I.dtype)
    terms = subset_terms(stats, config, smoothing, keep=keep, ops=TORCH)
    d_inter, d_pred = entry_gradients(terms, config, (B, C))
    grad = k * (d_pred.abs() * (counts - Y).clamp_min(0) + (d_inter + d_pred).abs() * Y)
    kI, kP, kY = I * k, P * k, Y * k
    target_phi = phi.reduce(kY, TORCH)
    empty = (target_phi == 0).to(I.dtype).expand(B, C)
    dsc = 2 * phi.reduce(kI, TORCH) / (phi.reduce(kP, TORCH) + target_phi).clamp_min(1e-300)
    dsc = dsc.expand(B, C) * (1 - empty)
    w_all = k / phi.reduce(k, TORCH).clamp_min(1)  # each subset counted once over its kept entries
    w_class = k / phi.sum_batch(k, TORCH).clamp_min(1)  # ... once per class column it touches
    unannotated = torch.zeros_like(I) if annotated is None else (~annotated).to(I.dtype)
    shared = (grad, grad * empty, kP * empty, kP * (1 - empty))
    empty_map = k * (Y == 0).to(I.dtype)  # one (image, class) map, whatever subset φ it belongs to
    tail = (kY, k, torch.ones_like(I), unannotated, empty_map, grad * empty_map, P * empty_map)

    def column(w):
        return (w, w * empty, *shared, w * dsc, *tail)

    per_class = torch.stack(column(w_class)).sum(1)
    overall = torch.stack(column(w_all)).sum((1, 2)).unsqueeze(1)
    return torch.cat([per_class, overall], dim=1)


def _values(sums: list[float], voxel_ml: float | None, missing: bool) -> dict:
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


def _check_spacing(spacing) -> float | None:
    """The volume of one voxel in ml from a spacing in mm (one value per spatial axis)."""
    if spacing is None:
        return None
    values = list(spacing) if hasattr(spacing, "__iter__") else [spacing]
    if not values or not all(
        isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and float(v) > 0 for v in values
    ):
        raise ValueError(f"spacing must be positive voxel sizes in mm, one per spatial axis; got {spacing!r}")
    return math.prod(float(v) for v in values) / 1000.0


def find_loss(loss):
    """The phidice Dice-family loss inside ``loss``: itself, or found through ``.loss`` attributes of wrappers
    (MONAI's ``AnnotatedLoss`` and ``DeepSupervisionLoss``, nnU-Net's scaled and deep-supervision losses);
    ``loss`` itself when none is found (the monitor then names it in its error)."""
    seen, current = 0, loss
    while current is not None and seen < 8:
        if isinstance(current, MONITORED):
            return current
        current = getattr(current, "loss", None)
        seen += 1
    return loss


def flat_values(result: dict, prefix: str = "", per_class: bool = True) -> dict[str, float]:
    """A :meth:`GradientMonitor.compute` result as flat ``name`` / ``name/class{c}`` floats (for loggers);
    undefined values (None) left out, NaN kept."""
    out = {f"{prefix}{k}": float(v) for k, v in result.items() if k in VALUES or k.endswith("_ml") if v is not None}
    if per_class:
        for c, values in result["per_class"].items():
            out.update({f"{prefix}{k}/class{c}": float(v) for k, v in values.items() if v is not None})
    return out


def _check_loss(loss) -> None:
    if not isinstance(loss, MONITORED):
        raise TypeError(
            f"loss must be a phidice Dice-family loss module (DiceLoss, DiceCELoss, TverskyLoss, JaccardLoss, their "
            f"CE forms, LeafDiceLoss, MarginalDiceLoss, LeafDiceCELoss, MarginalDiceCELoss); got "
            f"{type(loss).__module__}.{type(loss).__name__}: the monitor reads the per-(b, c) sums that only these "
            f"losses compute"
        )
    config = loss.config
    if config.reduction == "none":
        raise ValueError(
            "loss has reduction='none': one loss per subset has no single gradient to monitor; use 'mean' or 'sum'"
        )
    if config.squared:
        raise ValueError(
            "loss has squared=True: its gradient at a voxel depends on ỹ there, which the sums "
            "Σỹ² do not give; the monitor needs the L1 relaxation (squared=False)"
        )


class GradientMonitor:
    """Live Eq. 4 statistics of a phidice Dice-family loss, accumulated like a torchmetrics metric.

    Feed it the sums of the loss's own calls — ``loss(logits, target, monitor=monitor)``, or every call after
    :meth:`attach` — or, where the loss is not called, :meth:`update` (which runs the loss's sums without
    gradient). :meth:`compute` returns a dict of the :data:`VALUES` overall, with ``per_class[c]`` the same
    per input channel c; :meth:`reset` clears; :meth:`epoch_end` does all three, keeps the result in
    :attr:`history` and logs :meth:`advise` once.

    Args:
        loss: a phidice Dice-family loss module (``DiceLoss``, ``DiceCELoss``, ``TverskyLoss``, ``JaccardLoss``,
            their CE forms, ``LeafDiceLoss``, ``MarginalDiceLoss`` and their CE forms), with ``reduction``
            "mean" or "sum" and ``squared=False``.
        spacing: voxel size in mm (one per spatial axis): ``empty_predicted_volume_ml`` is reported too.
        sync: reduce the sums across DDP ranks in :meth:`compute` (a collective: call it on every rank).
        log: :meth:`epoch_end` logs the advice (one ``logging`` line, and a ``warnings`` warning when a class
            is flagged) at most once per epoch; False keeps it silent.
        attach: attach at construction (see :meth:`attach`).
        history_file: :meth:`epoch_end` rewrites it (atomically, on rank 0) with :attr:`history` as JSON lines,
            the input of ``phidice monitor plot``.

    Raises:
        TypeError: ``loss`` is not a phidice Dice-family loss module.
        ValueError: ``reduction="none"``, ``squared=True``, a bad ``spacing``; later, an input whose channels
            differ from the earlier updates'.
    """

    def __init__(
        self, loss, *, spacing=None, sync: bool = True, log: bool = True, attach: bool = False, history_file=None
    ):
        _check_loss(loss)
        self.loss = loss
        self.voxel_ml = _check_spacing(spacing)
        self.sync = bool(sync)
        self.log = bool(log)
        self.missing = isinstance(loss, _PartialDice)
        self.history: list[dict] = []
        self._state: torch.Tensor | None = None
        self._channels: int | None = None
        self._replicated = False
        self.updates = 0
        self.history_file = history_file
        if attach:
            self.attach()

    # ------------------------------------------------------------------ feeding
    def attach(self) -> GradientMonitor:
        """Tell this monitor the sums of every later call of the loss (until :meth:`detach`)."""
        self.loss._monitor = self
        return self

    def detach(self) -> GradientMonitor:
        if self.loss._monitor is self:
            self.loss._monitor = None
        return self

    def update(self, input, target, annotated=None, mask=None) -> None:
        """Accumulate one batch where the loss is not called (e.g. validation): the loss's sums, no gradient.

        Beside a loss call on the same batch use ``loss(..., monitor=monitor)`` instead: it reuses that call's
        sums (no second pass over the volume).
        """
        if annotated is not None and not self.missing:
            raise ValueError(f"annotated is for the missing-label losses; {type(self.loss).__name__} takes none")
        with torch.no_grad():
            if self.missing:
                self.loss(input, target, annotated, mask, monitor=self)
            else:
                self.loss(input, target, mask, monitor=self)

    def record(self, stats: DiceStats, prepared, shape, annotated=None) -> None:
        """The loss's hook: its (B, C) sums of every channel, the prepared target, the input shape and the
        (B, C) ``annotated`` rows of a missing-label loss. Called by the loss; adds one batch."""
        config = self.loss.config
        C = shape[1]
        if self._channels is None:
            self._channels = C
        elif C != self._channels and not is_compiling():
            raise ValueError(
                f"input has {C} channels (shape {tuple(shape)}) but this monitor's earlier updates had "
                f"{self._channels}: one monitor follows one loss on one kind of input"
            )
        stats = DiceStats(*(t.detach().to(torch.float64) for t in stats))
        counts = _counts(stats, prepared, shape, prepared.labels is not None and C > 1).expand(shape[0], C)
        keep = None
        if annotated is not None:
            keep = (
                annotated
                if type(self.loss).__name__.startswith("Marginal")
                else leaf_keep(annotated, config.activation)
            )
        stats, counts, keep, annotated = self._global_batch(stats, counts, keep, annotated)
        sl = slice(1, None) if (not config.include_background and C > 1) else slice(None)
        scored = drop_background(stats, config.include_background)
        smoothing = align_smoothing(self.loss.smoothing, config, C, scored.intersection)
        rows = monitor_rows(
            scored,
            counts[:, sl],
            None if keep is None else keep[:, sl],
            None if annotated is None else annotated[:, sl],
            config,
            smoothing,
        )
        self._state = rows if self._state is None else self._state + rows
        self.updates += 1

    def _global_batch(self, stats, counts, keep, annotated):
        """Under ``sync_batch`` with several ranks: every rank's rows (the subsets the loss used), no gradient."""
        if not (self.loss.config.sync_batch and distributed.get_world_size() > 1):
            return stats, counts, keep, annotated
        B, C = stats.intersection.shape
        flags = [f.to(torch.float64) for f in (keep, annotated) if f is not None]
        rows, _ = distributed.gather_rows(torch.stack([*stats, counts, *flags], dim=-1))
        parts = rows.unbind(-1)
        it = iter(parts[4:])
        keep = None if keep is None else next(it) > 0.5
        annotated = None if annotated is None else next(it) > 0.5
        self._replicated = True
        return DiceStats(*parts[:3]), parts[3], keep, annotated

    # ------------------------------------------------------------------ results
    def _reduced(self) -> torch.Tensor | None:
        state = self._state
        world = distributed.get_world_size()
        if self.sync and world > 1 and not self._replicated:
            if state is None:
                raise RuntimeError(
                    "GradientMonitor.compute under DDP: this rank has no update; every rank must update before compute"
                )
            state = distributed.all_reduce_sum(state.clone())
        return state

    def compute(self) -> dict:
        """The values accumulated since the last :meth:`reset`: :data:`VALUES` overall and in ``per_class``
        (keyed by input channel), plus ``updates``; NaN where a value is undefined (e.g. no empty subset).

        A batch whose probabilities are not finite (a NaN logit, or +Inf under a softmax) makes every value
        that reads the predictions NaN until the next reset — gradient shares, predicted volumes, Dice — and
        :meth:`advise` says so instead of advising; the values of the targets alone (the empty fractions,
        ``expected_volume``, ``unannotated_fraction``) stay as they are. No host synchronisation is added to
        find it: the NaN travels in the sums."""
        state = self._reduced()
        if state is None:
            raise RuntimeError(
                "GradientMonitor.compute before any update: call the loss with monitor=, attach(), or update() first"
            )
        table = state.detach().cpu().tolist()
        columns = list(zip(*table))
        first = 1 if (not self.loss.config.include_background and (self._channels or 0) > 1) else 0
        out = _values(list(columns[-1]), self.voxel_ml, self.missing)
        out["per_class"] = {
            first + c: _values(list(col), self.voxel_ml, self.missing) for c, col in enumerate(columns[:-1])
        }
        out["updates"] = self.updates
        return out

    def reset(self) -> None:
        self._state = None
        self._replicated = False
        self.updates = 0

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the per-epoch :attr:`history`."""
        return {"history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = [dict(h) for h in state.get("history", [])]

    def epoch_end(self, epoch: int | None = None) -> dict:
        """compute(), append to :attr:`history` (with ``epoch``), log the advice once (``log=True``), reset()."""
        result = self.compute()
        result["epoch"] = len(self.history) if epoch is None else int(epoch)
        self.history.append(result)
        self.reset()
        if self.history_file is not None and distributed.get_rank() == 0:
            write_history(self.history_file, self.history)
        if self.log:
            lines = self.advise(result)
            logger.info("GradientMonitor epoch %s: %s", result["epoch"], " | ".join(lines))
            flagged = [line for line in lines if "They are ignored" in line]
            if flagged:
                warnings.warn("; ".join(flagged), RuntimeWarning, stacklevel=2)
        return result

    def advise(self, result: dict | None = None) -> list[str]:
        """What the numbers say, in the paper's terms, one line per class (see :func:`advice_lines`)."""
        if result is None:
            result = self.history[-1] if self.history and self._state is None else self.compute()
        earlier = [h for h in self.history if h is not result]
        return advice_lines(result, earlier[-1] if earlier else None, self.loss.config, self.voxel_ml is not None)


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
