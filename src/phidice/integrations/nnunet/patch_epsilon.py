"""ε = E[Σy] per output channel measured on training patches, as the network sees them (Eq. 5 heuristic).

nnU-Net trains on patches (cropped, foreground-oversampled, augmented), so the volume of a class in a patch is
not its volume in the case: whole-volume counts overestimate it. :class:`PatchVolumes` accumulates Σy per
deep-supervision level and output channel over batches drawn from the trainer's own data loader, with
:func:`phidice.estimate_epsilon` on each batch's label maps. With per-case annotations, a channel's mean runs
over the images that annotate it (an unannotated class is labelled 0 there and carries no volume).
"""

from __future__ import annotations

import numpy as np
import torch

import phidice
from phidice.integrations.nnunet.task import NNUNetTask


def _batch_volume_sums(target: torch.Tensor, task: NNUNetTask, annotated: torch.Tensor | None) -> np.ndarray:
    """Σ_b Σ_i y_{b,c,i} per output channel c of one (B, …) target of nnU-Net's form."""
    target = target.detach().cpu()
    B = target.shape[0]
    if not task.regions:
        labels = target[:, 0] if target.ndim >= 3 and target.shape[1] == 1 else target
        mean = phidice.estimate_epsilon(
            labels, num_classes=task.num_channels, ignore_index=task.ignore_label, progress=False, workers=1
        )
        return mean.numpy() * B
    sums = np.zeros(task.num_channels)
    ignore = target[:, -1].bool() if task.ignore_label is not None else None
    for r in range(task.num_channels):
        region = target[:, r].bool()
        if annotated is not None:  # a region holding an unannotated label has an incomplete target
            region = region & annotated[:, r].cpu().view(B, *([1] * (region.ndim - 1)))
        lab = region.to(torch.int64)
        if ignore is not None:
            lab = lab.masked_fill(ignore, 2)
        mean = phidice.estimate_epsilon(
            lab, num_classes=2, ignore_index=None if ignore is None else 2, progress=False, workers=1
        )
        sums[r] = float(mean[1]) * B
    return sums


class PatchVolumes:
    """Running Σy and image counts per deep-supervision level and output channel."""

    def __init__(self, task: NNUNetTask):
        self.task = task
        self.sums: list[np.ndarray] | None = None
        self.counts: list[np.ndarray] | None = None
        self.batches = 0

    def add(self, target, annotated: torch.Tensor | None = None) -> None:
        """One batch's target (a tensor, or a list of tensors under deep supervision)."""
        levels = list(target) if isinstance(target, (list, tuple)) else [target]
        if self.sums is None or self.counts is None:
            self.sums = [np.zeros(self.task.num_channels) for _ in levels]
            self.counts = [np.zeros(self.task.num_channels) for _ in levels]
        if len(levels) != len(self.sums):
            raise ValueError(f"batch has {len(levels)} target levels; earlier batches had {len(self.sums)}")
        B = levels[0].shape[0]
        n = (
            np.full(self.task.num_channels, float(B))
            if annotated is None
            else annotated.detach().cpu().numpy().sum(0).astype(np.float64)
        )
        for i, t in enumerate(levels):
            self.sums[i] += _batch_volume_sums(t, self.task, annotated)
            self.counts[i] += n
        self.batches += 1

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(levels, C) arrays of Σy and of image counts."""
        if self.sums is None or self.counts is None:
            raise ValueError("no batches were added")
        return np.stack(self.sums), np.stack(self.counts)


def epsilon_from_totals(
    sums: np.ndarray, counts: np.ndarray, *, batch_in_phi: int = 1, names: list[str] | None = None
) -> list[tuple[float, ...]]:
    """ε per level and channel: B_φ · Σy / images (B_φ = 1 for Φ = I/CI, the batch size for BI/BCI).

    ValueError for a channel that no image annotates (nothing to average).
    """
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
    missing = np.flatnonzero((counts == 0).any(0))
    if missing.size:
        which = [names[c] if names else str(c) for c in missing]
        raise ValueError(
            f"ε = E[Σy]: output channel(s) {which} are annotated in none of the sampled patches; "
            f"draw more batches (eps_batches) or check the annotation file"
        )
    mean = sums / counts
    return [tuple(float(v) * batch_in_phi for v in row) for row in mean]
