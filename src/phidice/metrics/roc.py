"""ROC of telling two groups of images apart by their predicted volume (the paper's Fig. 2).

In the paper's BRATS experiment one group is always labelled for a class (HGG: enhancing tumour) and
the other never (LGG); a model that learned from the empty maps predicts small volumes for the second
group. The score of an image is its predicted volume, higher meaning "positive group".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class ROC(NamedTuple):
    """ROC points from (0, 0) to (1, 1), one per distinct volume, and the area under them."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # image counted positive when volume >= threshold; the first is +inf
    auc: float
    positive: object  # the group taken as positive
    n_positive: int
    n_negative: int


def _as_1d(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one entry per image); got shape {a.shape}")
    return a


def volume_roc(pred_volumes, groups, *, positive=None) -> ROC:
    """ROC and AUC for detecting the ``positive`` group from predicted volumes (higher → positive).

    ``groups`` holds one label per image and exactly two distinct labels. ``positive`` names the
    positive one; it may be left out when the labels are booleans or 0/1 (then True/1). Tied volumes
    form one ROC step (a diagonal segment), so the AUC is the Mann–Whitney U statistic / (n₁·n₀):
    the chance that a random positive image has a larger volume than a random negative one, ties
    counting 1/2.

    Args:
        pred_volumes: one predicted volume per image.
        groups: one group label per image, two distinct labels.
        positive: the positive label (default True / 1 for boolean or 0/1 labels).

    Returns:
        :class:`ROC`: ``fpr``, ``tpr``, ``thresholds``, ``auc`` and the group sizes.

    Raises:
        ValueError: lengths that differ, not exactly two groups, or a ``positive`` that is not one of them.

    Example:
        >>> from phidice.metrics import volume_roc
        >>> roc = volume_roc([5.0, 1.0, 3.0, 0.0], [True, False, True, False])
        >>> float(roc.auc)  # every positive image has the larger volume
        1.0
    """
    scores = _as_1d(pred_volumes, "pred_volumes")
    labels = _as_1d(groups, "groups")
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"pred_volumes and groups must have the same length; got {scores.shape[0]} and {labels.shape[0]}"
        )
    try:
        scores = scores.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"pred_volumes must be numbers; got dtype {scores.dtype}") from err
    if not np.isfinite(scores).all():
        raise ValueError("pred_volumes must be finite (no NaN or Inf)")
    kinds = list(dict.fromkeys(labels.tolist()))
    if len(kinds) != 2:
        raise ValueError(
            f"groups must hold exactly two distinct groups to compare; got {len(kinds)}: {sorted(map(str, kinds))}"
        )
    if positive is None:
        if set(kinds) <= {0, 1}:  # also True/False
            positive = 1
        else:
            raise ValueError(f"positive must name the positive group, one of {kinds[0]!r}, {kinds[1]!r}")
    if positive not in kinds:
        raise ValueError(f"positive={positive!r} is not one of the groups {kinds[0]!r}, {kinds[1]!r}")
    is_pos = labels == positive
    if isinstance(positive, bool) or positive in (0, 1):
        positive = next(k for k in kinds if k == positive)  # report the group as spelled in groups
    n1, n0 = int(is_pos.sum()), int((~is_pos).sum())

    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], is_pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each block of tied volumes
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / n1]
    fpr = np.r_[0.0, fps / n0]
    thresholds = np.r_[np.inf, s[last]]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return ROC(fpr, tpr, thresholds, auc, positive, n1, n0)
