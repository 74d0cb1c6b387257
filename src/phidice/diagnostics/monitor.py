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

import math

import torch

from phidice import distributed
from phidice.core import steps
from phidice.core.checks import is_compiling
from phidice.core.types import DiceStats, drop_background
from phidice.core.xp import TORCH
from phidice.diagnostics import monitor_math
from phidice.diagnostics.monitor_math import (
    ROWS,
    VALUES,
    advice_lines,
    check_config,
    check_spacing,
    flat_values,
    log_advice,
    results_of,
)
from phidice.diagnostics.monitor_plot import write_history
from phidice.equations import align_smoothing
from phidice.losses.compound import DiceCELoss
from phidice.losses.dice import DiceLoss
from phidice.missing.losses import _PartialDice

__all__ = ["GradientMonitor", "ROWS", "VALUES", "monitor_rows", "advice_lines", "find_loss", "flat_values"]

MONITORED = (DiceLoss, DiceCELoss, _PartialDice)


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
    """The (K, C' + 1) sums of one batch (rows :data:`ROWS`, float64) from its scored (B, C') sums: the
    torch-free :func:`phidice.diagnostics.monitor_math.monitor_rows` on torch tensors.

    ``counts`` (B, C') are the counted voxels N, ``keep`` (B, C') bool the entries in the loss (None: all),
    ``annotated`` (B, C') bool or None, ``smoothing`` ε and weights aligned with the scored classes.
    """
    return monitor_math.monitor_rows(stats, counts, keep, annotated, config, smoothing, TORCH)


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


def _check_loss(loss) -> None:
    if not isinstance(loss, MONITORED):
        raise TypeError(
            f"loss must be a phidice Dice-family loss module (DiceLoss, DiceCELoss, TverskyLoss, JaccardLoss, their "
            f"CE forms, LeafDiceLoss, MarginalDiceLoss, LeafDiceCELoss, MarginalDiceCELoss); got "
            f"{type(loss).__module__}.{type(loss).__name__}: the monitor reads the per-(b, c) sums that only these "
            f"losses compute"
        )
    check_config(loss.config)


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
        self.voxel_ml = check_spacing(spacing)
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
        keep = (
            None
            if annotated is None
            else steps.partial_keep(getattr(self.loss, "_kind", "leaf"), annotated, config.activation, TORCH)
        )
        stats, counts, keep, annotated = self._global_batch(stats, counts, keep, annotated)
        sl = slice(1, None) if (not config.include_background and C > 1) else slice(None)
        scored = drop_background(stats, config.include_background)
        smoothing = align_smoothing(self.loss.smoothing, config, C, scored.intersection, xp=TORCH)
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
        first = 1 if (not self.loss.config.include_background and (self._channels or 0) > 1) else 0
        out = results_of(state.detach().cpu().tolist(), first, self.voxel_ml, self.missing)
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
            log_advice(self.advise(result), result["epoch"])
        return result

    def advise(self, result: dict | None = None) -> list[str]:
        """What the numbers say, in the paper's terms, one line per class (see :func:`advice_lines`)."""
        if result is None:
            result = self.history[-1] if self.history and self._state is None else self.compute()
        earlier = [h for h in self.history if h is not result]
        return advice_lines(result, earlier[-1] if earlier else None, self.loss.config, self.voxel_ml is not None)
