"""Surface metrics of hard segmentations with a voxel spacing in mm: the 95th-percentile Hausdorff distance
(HD95) and the normalised surface Dice (NSD, Nikolov et al.), per image b and class c.

Definitions (the same as MONAI's ``HausdorffDistanceMetric(percentile=95)`` and ``SurfaceDiceMetric``):

* the surface S of a mask M is M minus its binary erosion by the face-connected cross (voxels outside the
  image count as background, so a mask touching the image border has a surface there);
* d(x, S) is the Euclidean distance in mm from voxel x to the nearest voxel of S (``spacing`` per axis);
* HD95 = max(q95{d(x, S_y) : x ∈ S_p}, q95{d(x, S_p) : x ∈ S_y}), the larger of the two directed 95th
  percentiles (linear interpolation between order statistics);
* NSD_τ = (|{x ∈ S_p : d(x, S_y) ≤ τ}| + |{x ∈ S_y : d(x, S_p) ≤ τ}|) / (|S_p| + |S_y|), τ in mm.

Distances come from ``scipy.ndimage.distance_transform_edt`` on the bounding box of both masks (exact: every
surface voxel lies inside it), so a small structure in a large volume costs little.

When the reference or the prediction of (b, c) is empty there is no surface to measure from, and the value
is a convention, chosen with the same ``empty=`` as :func:`~phidice.metrics.dice_score` so that the three
metrics agree on which cases are undefined:

=========  ========================  ==========================  ==========================
empty      Y = ∅, P = ∅              Y = ∅, P ≠ ∅                Y ≠ ∅, P = ∅
=========  ========================  ==========================  ==========================
"nan"      NaN, NaN                  NaN, NaN                    worst, 0
"ratio"    NaN, NaN                  worst, 0                    worst, 0
"one"      0, 1                      worst, 0                    worst, 0
"zero"     worst, 0                  worst, 0                    worst, 0
=========  ========================  ==========================  ==========================

(each cell: HD95, NSD). "worst" is ``hd_worst``: by default the image diagonal, √Σ((n_i − 1)·s_i)² mm —
the largest distance two voxels of the image can have, so a missed or hallucinated structure never scores
better than any real prediction, and means and confidence intervals stay finite; ``hd_worst=float("inf")``
gives MONAI's value. MONAI's own conventions are those of ``empty="ratio"`` with ``hd_worst=inf`` for
``SurfaceDiceMetric`` and ``HausdorffDistanceMetric()`` (the maximum); with ``percentile=95`` it returns NaN
whenever one side is empty (the percentile of infinite distances).

scipy is imported when a surface metric is computed, not when :mod:`phidice.metrics` is imported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from phidice.core.config import check_choice, check_empty
from phidice.core.deps import require
from phidice.metrics._hard import layout, layout_classes, reported_classes
from phidice.metrics.volume import check_spacing


class SurfaceScores(NamedTuple):
    """(B, C) float64 tensors: ``hd95`` in mm, and ``nsd`` in [0, 1] (None without a tolerance)."""

    hd95: torch.Tensor
    nsd: torch.Tensor | None


def _scipy_ndimage():
    return require("scipy.ndimage", "eval", "the surface metrics (HD95, NSD)")


def _check_tolerance(tolerance, C: int) -> np.ndarray | None:
    if tolerance is None:
        return None
    try:
        t = np.asarray(tolerance, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"tolerance must be a number in mm or one per class; got {tolerance!r}") from err
    if t.ndim == 0:
        t = np.full(C, float(t))
    if t.shape != (C,):
        raise ValueError(f"tolerance must be one number (mm) or one per reported class ({C}); got shape {t.shape}")
    if not np.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"tolerance must be finite and ≥ 0 (mm); got {tolerance!r}")
    return t


def image_diagonal(shape, spacing) -> float:
    """√Σ((n_i − 1)·s_i)² in mm: the largest distance between two voxel centres of an image."""
    return float(math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, spacing))))


def _worst(hd_worst, shape, spacing) -> float:
    if isinstance(hd_worst, str):
        check_choice("hd_worst", hd_worst, ("diagonal",))
        return image_diagonal(shape, spacing)
    if isinstance(hd_worst, bool) or not isinstance(hd_worst, (int, float)) or not hd_worst > 0:
        raise ValueError(f"hd_worst must be 'diagonal', a distance > 0 in mm or float('inf'); got {hd_worst!r}")
    return float(hd_worst)


def empty_scores(pred_empty: bool, ref_empty: bool, empty: str, worst: float) -> tuple[float, float] | None:
    """(HD95, NSD) of an empty reference and/or prediction under the ``empty`` convention (module table);
    None when both are non-empty (then they are measured)."""
    if not pred_empty and not ref_empty:
        return None
    nan = float("nan")
    if ref_empty and pred_empty:
        return {"nan": (nan, nan), "ratio": (nan, nan), "one": (0.0, 1.0), "zero": (worst, 0.0)}[empty]
    if ref_empty and empty == "nan":
        return nan, nan
    return worst, 0.0


def _bbox(*masks: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the union of the masks, one voxel wider on every side (clipped to the image)."""
    ndimage = _scipy_ndimage()
    union = masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)
    box = ndimage.find_objects(union.astype(np.uint8))[0]
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, union.shape))


def _surface(mask: np.ndarray) -> np.ndarray:
    ndimage = _scipy_ndimage()
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def surface_distances(pred_mask, ref_mask, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from every surface voxel of ``pred_mask`` to the surface of ``ref_mask``, and back.

    Both masks are boolean arrays (*S) of one image and class and must be non-empty (an empty mask has no
    surface: that case is the ``empty`` convention of :func:`surface_metrics`). ``spacing``: mm per axis.

    Args:
        pred_mask, ref_mask: boolean arrays (*S), non-empty.
        spacing: mm per spatial axis.

    Returns:
        Float64 arrays (|S_p|,) and (|S_y|,): the distances of each surface voxel to the other surface.

    Raises:
        ValueError: an empty mask, masks of different shapes, or a bad spacing.

    Example:
        >>> import numpy as np
        >>> from phidice.metrics import surface_distances
        >>> a = np.zeros((8, 8), bool)
        >>> a[2:5, 2:5] = True
        >>> to_ref, to_pred = surface_distances(a, np.roll(a, 1, axis=1), (1.0, 1.0))
        >>> float(to_ref.max()), float(to_pred.max())
        (1.0, 1.0)
    """
    p, y = np.asarray(pred_mask, dtype=bool), np.asarray(ref_mask, dtype=bool)
    if p.shape != y.shape:
        raise ValueError(f"pred_mask shape {p.shape} and ref_mask shape {y.shape} differ")
    if not p.any() or not y.any():
        raise ValueError("surface_distances needs two non-empty masks (an empty mask has no surface)")
    sp = check_spacing(spacing, 1, p.ndim)[0]
    return _distances(p, y, sp)


def _distances(p: np.ndarray, y: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ndimage = _scipy_ndimage()
    box = _bbox(p, y)
    p, y = p[box], y[box]
    sp, sy = _surface(p), _surface(y)
    to_y = ndimage.distance_transform_edt(~sy, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return to_y[sp], to_p[sy]


def _scores(d_p: np.ndarray, d_y: np.ndarray, tolerance: float | None, percentile: float) -> tuple[float, float]:
    hd = max(float(np.percentile(d_p, percentile)), float(np.percentile(d_y, percentile)))
    if tolerance is None:
        return hd, float("nan")
    return hd, float((np.count_nonzero(d_p <= tolerance) + np.count_nonzero(d_y <= tolerance)) / (d_p.size + d_y.size))


def pair_scores(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing,
    *,
    tolerance: float | None = None,
    empty: str = "nan",
    percentile: float = 95.0,
    hd_worst="diagonal",
) -> tuple[float, float]:
    """(HD95, NSD) of one image and class from two boolean masks (*S); NSD is NaN without a tolerance."""
    p, y = np.asarray(pred_mask, dtype=bool), np.asarray(ref_mask, dtype=bool)
    sp = np.asarray(spacing, dtype=np.float64)
    conv = empty_scores(not p.any(), not y.any(), empty, _worst(hd_worst, p.shape, sp))
    if conv is not None:
        hd, nsd = conv
        return hd, (nsd if tolerance is not None else float("nan"))
    return _scores(*_distances(p, y, sp), tolerance, percentile)


def label_map_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing,
    classes,
    *,
    tolerance=None,
    empty: str = "nan",
    percentile: float = 95.0,
    hd_worst="diagonal",
) -> tuple[np.ndarray, np.ndarray]:
    """(HD95, NSD) of each class in ``classes`` for one pair of integer label maps (*S) — the folder evaluation's
    path: one pass over each map finds every class's bounding box, and each class is scored on the box
    that holds it in either map. NSD is NaN without a tolerance; ``tolerance`` is one value or one per class."""
    ndimage = _scipy_ndimage()
    if pred.shape != ref.shape:
        raise ValueError(f"pred shape {pred.shape} and reference shape {ref.shape} differ")
    sp = check_spacing(spacing, 1, ref.ndim)[0]
    worst = _worst(hd_worst, ref.shape, sp)
    tol = _check_tolerance(tolerance, len(classes))
    top = max(classes, default=0)
    boxes = [ndimage.find_objects(x, max_label=top) if top > 0 else [] for x in (pred, ref)]
    hd, nsd = np.empty(len(classes)), np.empty(len(classes))
    for j, c in enumerate(classes):
        if c == 0:
            box = tuple(slice(None) for _ in ref.shape)
        else:
            found = [b[c - 1] for b in boxes if b[c - 1] is not None]
            if not found:
                conv = empty_scores(True, True, empty, worst)
                assert conv is not None  # both maps are empty
                hd[j], nsd[j] = conv[0], conv[1] if tol is not None else float("nan")
                continue
            box = tuple(slice(min(f[k].start for f in found), max(f[k].stop for f in found)) for k in range(ref.ndim))
        # outside the box class c is absent from both maps, so eroding with a background border and the distance
        # transform inside the box give the surfaces and distances of the whole image
        p, y = pred[box] == c, ref[box] == c
        conv = empty_scores(not p.any(), not y.any(), empty, worst)
        if conv is not None:
            hd[j], nsd[j] = conv[0], conv[1] if tol is not None else float("nan")
            continue
        hd[j], nsd[j] = _scores(*_distances(p, y, sp), None if tol is None else tol[j], percentile)
    return hd, nsd


def _as_masks(pred, target, num_classes, threshold, include_background):
    """Both inputs as per-image, per-class masks, following the layout rules of :func:`dice_score`:
    (B, reported classes, spatial shape, get(b, c) -> (pred mask, reference mask))."""
    lay = layout(pred, target, threshold=threshold)
    p, t, labels = lay.pred, lay.target, lay.labels
    shape = (lay.batch, *lay.spatial) if lay.spatial is not None else tuple(next(iter(labels.values())).shape)
    if len(shape) < 2:
        raise ValueError(f"surface metrics need a batch axis and at least one spatial axis; got shape {shape}")
    C = layout_classes(lay, num_classes)
    classes = reported_classes(C, include_background)
    sides: list[tuple[Any, Any]] = []  # (labels, None) or (None, maps) per side
    for name, h in (("pred", p), ("target", t)):
        if name in labels:
            sides.append((labels[name].cpu().numpy(), None))
        else:
            assert h.maps is not None  # not a label map: a bool map
            sides.append((None, h.maps.cpu().numpy()))

    def get(b: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        (lp, mp), (lt, mt) = sides
        pm = mp[b, c] if mp is not None else lp[b] == (1 if C == 1 else c)
        tm = mt[b, c] if mt is not None else lt[b] == (1 if C == 1 else c)
        return pm, tm

    return shape[0], classes, tuple(shape[1:]), get


def surface_metrics(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    spacing: Sequence[float] | torch.Tensor | np.ndarray,
    *,
    tolerance: float | Sequence[float] | None = None,
    num_classes: int | None = None,
    include_background: bool = True,
    threshold: float | str | None = None,
    empty: str = "nan",
    percentile: float = 95.0,
    hd_worst: str | float = "diagonal",
) -> SurfaceScores:
    """HD95 (mm) and NSD at ``tolerance`` mm per image and class (B, C), with the ``empty`` convention of DSC.

    Args:
        pred: as :func:`~phidice.metrics.dice_score` (label maps (B, *S), binary maps (B, C, *S), or
            probabilities with a threshold).
        target: as :func:`~phidice.metrics.dice_score`.
        spacing: voxel size in mm, one value per spatial axis, or (B, ndim) for images of different spacings.
        tolerance: τ of the NSD in mm, one value or one per reported class; None computes HD95 only.
        empty: "nan", "ratio", "one" or "zero": the value when the reference and/or the prediction of (b, c)
            is empty (module docstring table).
        num_classes: as :func:`~phidice.metrics.dice_score`.
        include_background: as :func:`~phidice.metrics.dice_score`.
        threshold: as :func:`~phidice.metrics.dice_score`.
        percentile: the percentile of the directed distances (95 for HD95, 100 for the Hausdorff distance).
        hd_worst: HD95 of a missed or hallucinated structure: "diagonal" (image diagonal, default), a
            distance in mm, or float("inf").

    Returns:
        :class:`SurfaceScores`: ``hd95`` (B, C) and ``nsd`` (B, C) (None without ``tolerance``), float64.

    Raises:
        ValueError: a bad spacing, tolerance, percentile, empty rule or layout.

    Example:
        >>> from phidice.metrics import surface_metrics
        >>> import torch
        >>> pred = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> pred[0, 2:5, 2:5] = 1  # a 3 × 3 square
        >>> ref = torch.roll(pred, 1, dims=2)  # the same square, one voxel to the right
        >>> surface_metrics(pred, ref, (1.0, 1.0), tolerance=1.0, include_background=False)
        SurfaceScores(hd95=tensor([[1.]], dtype=torch.float64), nsd=tensor([[1.]], dtype=torch.float64))
    """
    check_empty(empty, "score")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be a number in [0, 100]; got {percentile!r}")
    B, classes, S, get = _as_masks(pred, target, num_classes, threshold, include_background)
    sp = check_spacing(spacing, B, len(S))
    tol = _check_tolerance(tolerance, len(classes))
    hd = np.empty((B, len(classes)))
    nsd = np.empty((B, len(classes)))
    for b in range(B):
        worst = _worst(hd_worst, S, sp[b])
        for j, c in enumerate(classes):
            p, y = get(b, c)
            hd[b, j], nsd[b, j] = pair_scores(
                p,
                y,
                sp[b],
                tolerance=None if tol is None else tol[j],
                empty=empty,
                percentile=percentile,
                hd_worst=worst,
            )
    return SurfaceScores(torch.from_numpy(hd), None if tol is None else torch.from_numpy(nsd))


def hd95(pred, target, spacing, **kwargs) -> torch.Tensor:
    """HD95 in mm per image and class (B, C); options as :func:`surface_metrics`.

    Args:
        pred, target, spacing, **kwargs: as :func:`surface_metrics` (``tolerance`` aside).

    Returns:
        (B, C) float64.

    Raises:
        ValueError: as :func:`surface_metrics`.

    Example:
        >>> from phidice.metrics import hd95
        >>> import torch
        >>> pred = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> pred[0, 2:5, 2:5] = 1  # a 3 × 3 square
        >>> ref = torch.roll(pred, 1, dims=2)  # the same square, one voxel to the right
        >>> hd95(pred, ref, (1.0, 1.0), include_background=False)
        tensor([[1.]], dtype=torch.float64)
    """
    return surface_metrics(pred, target, spacing, **kwargs).hd95


def normalized_surface_dice(pred, target, spacing, tolerance, **kwargs) -> torch.Tensor:
    """NSD at ``tolerance`` mm per image and class (B, C); options as :func:`surface_metrics`.

    Args:
        pred, target, spacing, tolerance, **kwargs: as :func:`surface_metrics`.

    Returns:
        (B, C) float64 in [0, 1].

    Raises:
        ValueError: as :func:`surface_metrics`.

    Example:
        >>> from phidice.metrics import normalized_surface_dice
        >>> import torch
        >>> pred = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> pred[0, 2:5, 2:5] = 1  # a 3 × 3 square
        >>> ref = torch.roll(pred, 1, dims=2)  # the same square, one voxel to the right
        >>> normalized_surface_dice(pred, ref, (1.0, 1.0), 0.5, include_background=False)  # τ below the shift
        tensor([[0.5000]], dtype=torch.float64)
    """
    if tolerance is None:
        raise ValueError("tolerance (mm) is required for the normalised surface Dice")
    nsd = surface_metrics(pred, target, spacing, tolerance=tolerance, **kwargs).nsd
    assert nsd is not None  # a tolerance was given
    return nsd
