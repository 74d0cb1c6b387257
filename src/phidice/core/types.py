"""The data that flows between the layers: per-(image, class) sums and a prepared target."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

from phidice.core.phi import Phi, parse_phi


class DiceStats(NamedTuple):
    """Sums of Eq. 3 per image and class, (B, C) each, or per subset φ after :meth:`reduce`.

    For probabilities ỹ, targets y and a voxel mask m: ``intersection`` Σ m·y·ỹ, ``pred_sum`` Σ m·ỹ and
    ``target_sum`` Σ m·y (Σ m·ỹ² and Σ m·y² when squared). Every loss, metric and diagnostic in phidice
    works on these three small tensors.
    """

    intersection: Any  # (B, C): Σ m·y·ỹ
    pred_sum: Any  # (B, C): Σ m·ỹ  (or Σ m·ỹ²)
    target_sum: Any  # (B, C): Σ m·y  (or Σ m·y²)

    def reduce(self, phi: str | Phi) -> DiceStats:
        """Sum into one entry per φ ∈ Φ: (B, C), (B, 1), (1, C) or (1, 1) for I, CI, BI, BCI."""
        phi = parse_phi(phi)
        return DiceStats(*(phi.reduce(t) for t in self))

    def select_classes(self, index) -> DiceStats:
        return DiceStats(*(t[:, index] for t in self))


_warned_bg = False


def drop_background(stats: DiceStats, include_background: bool, stacklevel: int = 3) -> DiceStats:
    """The sums without class 0 unless ``include_background`` (a single channel is the foreground: kept)."""
    global _warned_bg
    if include_background:
        return stats
    if stats.intersection.shape[1] == 1:
        if not _warned_bg:
            warnings.warn("include_background=False ignored: a single channel is the foreground", stacklevel=stacklevel)
            _warned_bg = True
        return stats
    return stats.select_classes(slice(1, None))


class PreparedTarget(NamedTuple):
    """A target brought to a common form: either integer labels or a dense (B, C, *S) float map."""

    labels: Any  # (B, *S) int64 with ignored voxels set to 0, or None
    dense: Any  # (B, C, *S) float, or None
    mask: Any  # (B, 1, *S) or (B, C, *S) float in [0, 1], or None
