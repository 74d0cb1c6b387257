"""Accumulate hard Dice counts over batches (and ranks), then score any Φ at the end.

Only the (B, C) counts I, P, Y of every image are kept, so the scores at the end are exactly those of
one big batch: Φ = I/CI give one score per image seen, Φ = BI/BCI sum the counts of all images first
(the "global" Dice of nnU-Net's online evaluation and torchmetrics' ``aggregation_level="global"``).
"""

from __future__ import annotations

import torch

from phidice import distributed
from phidice.core.config import check_empty
from phidice.core.phi import Phi, parse_phi
from phidice.core.types import DiceStats
from phidice.metrics._hard import hard_stats
from phidice.metrics.dice import reduce_scores, score_from_stats


def _pad_classes(stats: DiceStats, C: int) -> DiceStats:
    extra = C - stats.intersection.shape[1]
    if extra == 0:
        return stats
    return DiceStats(*(torch.nn.functional.pad(t, (0, extra)) for t in stats))


class DiceAccumulator:
    """Running hard Dice over batches: ``update(pred, target)`` per batch, ``compute(phi)`` at the end.

    The options are those of :func:`~phidice.metrics.dice_score`. With label maps and no
    ``num_classes``, batches may see different largest labels; classes absent so far count zero.
    Under ``torch.distributed``, call :meth:`sync` before :meth:`compute` on every rank: it gathers the
    per-image counts of all ranks, so every Φ is scored over the global set of images.

    Args:
        num_classes, include_background, threshold, ignore_index: as :func:`~phidice.metrics.dice_score`.
        empty: the default empty rule of :meth:`compute`.

    Raises:
        ValueError: a bad option (here), or batches whose layout or classes do not fit (in :meth:`update`).

    Example:
        >>> from phidice.metrics import DiceAccumulator
        >>> import torch
        >>> pred = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])  # (B, voxels) labels
        >>> ref = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]])  # image 1 has no class 1
        >>> acc = DiceAccumulator(2, include_background=False)
        >>> for b in range(2):
        ...     _ = acc.update(pred[b:b + 1], ref[b:b + 1])
        >>> acc.compute("BI")  # the same as dice_score over the whole batch
        tensor([[0.6667]], dtype=torch.float64)
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        include_background: bool = True,
        threshold=None,
        ignore_index: int | None = None,
        empty: str = "nan",
    ):
        check_empty(empty, "score")
        self.num_classes = num_classes
        self.include_background = include_background
        self.threshold = threshold
        self.ignore_index = ignore_index
        self.empty = empty
        self.reset()

    def reset(self) -> None:
        self._local: list[DiceStats] = []
        self._gathered: DiceStats | None = None

    def update(self, pred, target) -> DiceStats:
        """Add one batch; returns its (B, C) counts."""
        stats = hard_stats(
            pred,
            target,
            num_classes=self.num_classes,
            threshold=self.threshold,
            ignore_index=self.ignore_index,
            include_background=self.include_background,
        )
        self.update_stats(stats)
        return stats

    def update_stats(self, stats: DiceStats) -> None:
        """Add precomputed (B, C) counts (e.g. from :func:`~phidice.metrics.hard_stats`)."""
        if not isinstance(stats, DiceStats):
            raise TypeError(f"stats must be a DiceStats of (B, C) counts; got {type(stats).__name__}")
        shapes = {tuple(t.shape) for t in stats}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"stats must hold three (B, C) tensors of one shape; got shapes {sorted(shapes)}")
        self._local.append(DiceStats(*(t.detach().long() for t in stats)))
        self._gathered = None

    @property
    def num_images(self) -> int:
        return 0 if not self._local and self._gathered is None else int(self.stats.intersection.shape[0])

    @property
    def stats(self) -> DiceStats:
        """Counts (N, C) of every image seen (of every rank after :meth:`sync`)."""
        if self._gathered is not None:
            return self._gathered
        return self._local_stats()

    def _local_stats(self) -> DiceStats:
        if not self._local:
            raise ValueError("DiceAccumulator is empty: call update() before compute()")
        C = max(s.intersection.shape[1] for s in self._local)
        padded = [_pad_classes(s, C) for s in self._local]
        return DiceStats(*(torch.cat(ts, 0) for ts in zip(*padded)))

    def compute(self, phi: str | Phi = "I", *, empty: str | None = None, reduction: str = "none") -> torch.Tensor:
        """DSC_φ over all images seen, shapes as :func:`~phidice.metrics.dice_score`."""
        scores = score_from_stats(self.stats, phi=parse_phi(phi), empty=self.empty if empty is None else empty)
        return reduce_scores(scores, reduction)

    def sync(self) -> DiceAccumulator:
        """Gather the per-image counts of all ranks (a no-op without an initialised process group).

        Images are ordered by rank. Idempotent until the next :meth:`update`; every rank must call it.
        """
        if not distributed.is_initialized():
            return self
        local = self._local_stats() if self._local else None
        block = torch.zeros((0, 3, 0), dtype=torch.long) if local is None else torch.stack(tuple(local), 1)
        rows, _ = distributed.gather_rows(block)  # (N, 3, C), classes zero-padded to the largest
        if rows.shape[0] == 0:
            raise ValueError("DiceAccumulator.sync: no rank has any image")
        self._gathered = DiceStats(*rows.unbind(1))
        return self
