"""Hard (binarised) segmentations brought to per-image, per-class counts.

The metrics reuse the loss's sufficient statistics: for hard predictions p ∈ {0, 1} and references
y ∈ {0, 1}, :func:`hard_stats` returns a :class:`~phidice.core.types.DiceStats` of exact int64
counts per image b and class c — intersection Σ p·y, prediction volume Σ p and reference volume Σ y —
which every Φ then sums exactly as the loss does.

Input layouts (a "map" always has a channel axis, a "label map" never does):

* label maps: integer (B, *S) — or (B, 1, *S) next to a (B, C, *S) map — with values in [0, C);
* binary maps: bool or float (B, C, *S) with values in {0, 1}, one channel per class (channels may
  overlap: region / multi-label maps are fine); an integer tensor is a map only when the other side
  fixes the layout — a map of the same shape, or a (B, *S) label map next to its (B, C, *S) — so two
  integer tensors of equal shape are label maps (pass a pair of one-hot maps as bool or float);
* probability maps: float (B, C, *S) with ``threshold=t`` (channel-wise ``p >= t``) or
  ``threshold="argmax"`` (the class of largest probability, C ≥ 2). Non-binary floats without a
  threshold are an error, never silently rounded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from phidice.core.types import DiceStats


def reported_classes(C: int, include_background: bool) -> list[int]:
    """The classes a metric reports: all C, or 1 … C − 1 without the background (a single channel is kept)."""
    return list(range(C)) if include_background or C == 1 else list(range(1, C))


class Hard(NamedTuple):
    """A hard segmentation: either ``labels`` (B, *S) int64 or ``maps`` (B, C, *S) bool."""

    labels: torch.Tensor | None
    maps: torch.Tensor | None


def as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy array; got {type(x).__name__}")


def _is_int(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _check_threshold(threshold):
    if threshold is None or threshold == "argmax":
        return threshold
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be None, a finite number or 'argmax'; got {threshold!r}")
    return float(threshold)


def _binary_map(t: torch.Tensor, name: str, hint: str) -> torch.Tensor:
    if t.dtype == torch.bool:
        return t
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued; got dtype {t.dtype}")
    binary = (t == 0) | (t == 1)
    if not bool(binary.all()):
        value = t[~binary].flatten()[0].item()
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} is read as a binary map (B, C, *S) but holds the "
            f"non-binary value {value!r}{hint}"
        )
    return t != 0


def harden(x, name: str, *, threshold=None, label_like: bool = False) -> Hard:
    """One input as labels or a bool map, following the layout rules of the module docstring.

    ``label_like=True`` reads an integer-valued float tensor as labels (a reference stored as float).
    """
    t = as_tensor(x, name)
    threshold = _check_threshold(threshold)
    if t.ndim < 2:
        raise ValueError(f"{name} must have a batch axis and at least one spatial axis; got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; got shape {tuple(t.shape)}")
    if threshold is not None:
        if not t.is_floating_point():
            raise TypeError(
                f"threshold={threshold!r} applies to float probability maps (B, C, *S); {name} has "
                f"dtype {t.dtype} (pass hard labels/masks without a threshold)"
            )
        if t.ndim < 3:
            raise ValueError(f"threshold={threshold!r} needs {name} as a map (B, C, *S); got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or Inf")
        if threshold == "argmax":
            if t.shape[1] < 2:
                raise ValueError(
                    f"threshold='argmax' needs at least 2 channels; {name} has shape {tuple(t.shape)} "
                    "(use a numeric threshold for one sigmoid channel)"
                )
            return Hard(t.argmax(1), None)
        return Hard(None, t >= threshold)
    if _is_int(t):
        return Hard(t.long(), None)
    if t.dtype == torch.bool:
        return Hard(None, t)
    if label_like:
        if not bool((t == torch.round(t)).all() & torch.isfinite(t).all()):
            raise ValueError(f"{name} of shape {tuple(t.shape)} is read as labels but holds non-integer values")
        return Hard(t.long(), None)
    hint = "; pass threshold=<t> (e.g. 0.5) or threshold='argmax' for probabilities"
    return Hard(None, _binary_map(t, name, hint))


def _float_labels(target: torch.Tensor, pred: Hard) -> bool:
    """Whether a float target is a label map stored as float: shaped like the label prediction, or
    (B, 1, *S) next to a multi-channel map (MONAI's label layout). Otherwise it is a binary map."""
    if not target.is_floating_point():
        return False
    if pred.labels is not None:
        lab = pred.labels
        return target.shape in (lab.shape, (lab.shape[0], 1, *lab.shape[1:]))
    m = pred.maps
    assert m is not None  # a Hard holds labels or maps
    return m.shape[1] > 1 and target.ndim == m.ndim and target.shape[1] == 1 and target.shape[2:] == m.shape[2:]


def _labels_as_map(h: Hard, other: Hard, name: str) -> Hard:
    """An integer tensor shaped like the other side's (B, C, *S) map is a binary map too (e.g. F.one_hot)."""
    if h.labels is not None and other.maps is not None and h.labels.shape == other.maps.shape:
        return Hard(None, _binary_map(h.labels, name, ""))
    return h


def _int_one_hot(h: Hard, other: Hard, name: str) -> Hard:
    """Two integer tensors, (B, C, *S) with C > 1 and (B, *S): the first is a one-hot map."""
    a, b = h.labels, other.labels
    if (
        a is not None
        and b is not None
        and a.ndim == b.ndim + 1
        and a.shape[1] > 1
        and a.shape[:1] + a.shape[2:] == b.shape
    ):
        return Hard(None, _binary_map(a, name, ""))
    return h


def _one_hot(labels: torch.Tensor, C: int) -> torch.Tensor:
    if C == 1:  # a single binary channel: label 1 is the foreground
        return (labels == 1).unsqueeze(1)
    classes = torch.arange(C, device=labels.device).view(1, C, *([1] * (labels.ndim - 1)))
    return labels.unsqueeze(1) == classes


def _check_labels(labels: torch.Tensor, C: int, name: str, ignore_index=None) -> None:
    valid = labels if ignore_index is None else labels[labels != ignore_index]
    if valid.numel() == 0:
        return
    lo, hi = int(valid.min()), int(valid.max())
    upper = 2 if C == 1 else C
    if lo < 0 or hi >= upper:
        extra = "" if ignore_index is None else f" (ignore_index={ignore_index} excepted)"
        raise ValueError(
            f"{name} labels must lie in [0, {upper - 1}] for {C} class(es){extra}; got values in "
            f"[{lo}, {hi}] (set num_classes?)"
        )


def _max_label(lab: torch.Tensor, ignore_index) -> int:
    v = lab if ignore_index is None else lab[lab != ignore_index]
    return int(v.max()) if v.numel() else 0


def _num_classes(num_classes, found: int | None, inferred: int) -> int:
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
        if found is not None and found != num_classes:
            raise ValueError(f"num_classes={num_classes} but the maps have {found} channels")
        return num_classes
    return found if found is not None else max(2, inferred)


def hard_stats(
    pred,
    target,
    *,
    num_classes: int | None = None,
    threshold=None,
    ignore_index: int | None = None,
    include_background: bool = True,
) -> DiceStats:
    """Exact int64 counts (B, C) — Σ p·y, Σ p, Σ y — of a hard prediction against a hard reference.

    ``num_classes`` is taken from the maps' channel axis when either input is a map; for two label maps
    it defaults to 1 + the largest label present (at least 2). ``ignore_index`` (label references only)
    removes those voxels from every sum. ``include_background=False`` drops class 0 (C > 1).

    Args:
        pred, target, num_classes, threshold, ignore_index, include_background: as
            :func:`~phidice.metrics.dice_score`.

    Returns:
        :class:`~phidice.DiceStats` of int64 (B, C) tensors.

    Raises:
        ValueError / TypeError: as :func:`~phidice.metrics.dice_score`.

    Example:
        >>> from phidice.metrics import hard_stats
        >>> import torch
        >>> pred = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])  # (B, voxels) labels
        >>> ref = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]])  # image 1 has no class 1
        >>> hard_stats(pred, ref, num_classes=2).intersection
        tensor([[2, 1],
                [4, 0]])
    """
    return hard_stats_nd(
        pred,
        target,
        num_classes=num_classes,
        threshold=threshold,
        ignore_index=ignore_index,
        include_background=include_background,
    )[0]


class Layout(NamedTuple):
    """Two hard segmentations brought to one layout: maps and/or (B, *S) label maps of the same images."""

    pred: Hard
    target: Hard
    labels: dict  # {"pred"/"target": (B, *S) labels} for the sides given as label maps
    spatial: tuple | None  # the maps' spatial shape (None: two label maps)
    batch: int
    channels: int | None  # C of the maps (None: two label maps)


def layout(pred, target, *, threshold=None, ignore_index=None) -> Layout:
    """Read both inputs by the rules of the module docstring and check that they describe the same images."""
    p = harden(pred, "pred", threshold=threshold)
    t = harden(target, "target", label_like=_float_labels(as_tensor(target, "target"), p))
    ref = t.labels if t.labels is not None else t.maps
    assert ref is not None  # a Hard holds labels or maps
    if p.labels is not None and p.labels.device != ref.device or p.maps is not None and p.maps.device != ref.device:
        raise ValueError("pred and target must be on the same device")
    if ignore_index is not None and t.labels is None:
        raise ValueError("ignore_index applies to a label-map target (B, *S); target is a map (B, C, *S)")
    p, t = _labels_as_map(p, t, "pred"), _labels_as_map(t, p, "target")
    p, t = _int_one_hot(p, t, "pred"), _int_one_hot(t, p, "target")
    maps_c = {m.shape[1] for m in (p.maps, t.maps) if m is not None}
    if p.maps is not None and t.maps is not None and p.maps.shape != t.maps.shape:
        raise ValueError(f"pred shape {tuple(p.maps.shape)} and target shape {tuple(t.maps.shape)} differ")
    spatial = tuple(p.maps.shape[2:]) if p.maps is not None else tuple(t.maps.shape[2:]) if t.maps is not None else None
    labels = _common_label_layout(p, t, spatial)
    batch = {x.shape[0] for x in (p.labels, p.maps, t.labels, t.maps) if x is not None}
    if len(batch) != 1:
        raise ValueError(f"pred and target batch sizes differ: {sorted(batch)}")
    if len(maps_c) > 1:
        raise ValueError(f"pred and target maps have different channel counts: {sorted(maps_c)}")
    return Layout(p, t, labels, spatial, batch.pop(), maps_c.pop() if maps_c else None)


def layout_classes(lay: Layout, num_classes, ignore_index=None) -> int:
    """C: given, the maps' channels, or 1 + the largest label (at least 2); every label checked against it."""

    def ignored(name):
        return ignore_index if name == "target" else None

    inferred = 1 + max((_max_label(lab, ignored(name)) for name, lab in lay.labels.items()), default=-1)
    C = _num_classes(num_classes, lay.channels, inferred)
    for name, lab in lay.labels.items():
        _check_labels(lab, C, name, ignored(name))
    return C


def hard_stats_nd(
    pred, target, *, num_classes=None, threshold=None, ignore_index=None, include_background=True
) -> tuple[DiceStats, int]:
    """:func:`hard_stats` and the number of spatial axes (to check a voxel spacing against)."""
    lay = layout(pred, target, threshold=threshold, ignore_index=ignore_index)
    C = layout_classes(lay, num_classes, ignore_index)
    stats = _counts(lay.pred, lay.target, lay.labels, C, lay.batch, ignore_index)
    if not include_background and C > 1:
        stats = stats.select_classes(slice(1, None))
    ndim = len(lay.spatial) if lay.spatial is not None else next(iter(lay.labels.values())).ndim - 1
    return stats, ndim


def _common_label_layout(p: Hard, t: Hard, spatial) -> dict[str, torch.Tensor]:
    """{"pred"/"target": (B, *S) labels} for the sides given as label maps, checked against the maps' shape."""
    labels = {}
    for name, h in (("pred", p), ("target", t)):
        if h.labels is None:
            continue
        lab = h.labels
        if spatial is not None:
            if lab.ndim == len(spatial) + 2 and lab.shape[1] == 1:
                lab = lab[:, 0]
            if tuple(lab.shape[1:]) != tuple(spatial):
                other = p.maps if p.maps is not None else t.maps
                assert other is not None  # a spatial shape comes from a map
                raise ValueError(
                    f"{name} label map of shape {tuple(h.labels.shape)} does not fit the map of shape "
                    f"{tuple(other.shape)}: expected (B, *S) = {(other.shape[0], *spatial)}"
                )
        labels[name] = lab
    if len(labels) == 2:  # two label maps: (B, *S) and (B, 1, *S) are the same layout
        a, b = labels["pred"], labels["target"]
        if a.ndim == b.ndim + 1 and a.shape[1] == 1:
            labels["pred"] = a[:, 0]
        elif b.ndim == a.ndim + 1 and b.shape[1] == 1:
            labels["target"] = b[:, 0]
        if labels["pred"].shape != labels["target"].shape:
            raise ValueError(
                f"pred shape {tuple(labels['pred'].shape)} and target shape {tuple(labels['target'].shape)} differ"
            )
    return labels


def _present(labels: torch.Tensor | None) -> torch.Tensor:
    """The label map of a Hard without maps (it holds one or the other)."""
    assert labels is not None
    return labels


def _counts(p: Hard, t: Hard, labels: dict, C: int, B: int, ignore_index) -> DiceStats:
    """Exact int64 (B, C) counts; ``ignore_index`` voxels of the target leave every sum."""
    valid = None
    t_labels, p_labels = labels.get("target"), labels.get("pred")
    if ignore_index is not None:
        assert t_labels is not None  # layout() takes ignore_index with a label-map target only
        valid = t_labels != ignore_index
        t_labels = t_labels.masked_fill(~valid, 0)
    if p_labels is not None and t_labels is not None and C > 1:
        stats = _label_counts(p_labels, t_labels, C, valid)
    else:
        pm = p.maps if p.maps is not None else _one_hot(_present(p_labels), C)
        tm = t.maps if t.maps is not None else _one_hot(_present(t_labels), C)
        if valid is not None:
            v = valid.unsqueeze(1)
            pm, tm = pm & v, tm & v
        dims = tuple(range(2, pm.ndim))
        stats = DiceStats((pm & tm).sum(dims), pm.sum(dims), tm.sum(dims))
    return DiceStats(*(s.long().reshape(B, C) for s in stats))


def _image_class_index(labels: torch.Tensor, C: int) -> torch.Tensor:
    """b·C + label for every voxel of a (B, *S) label map: one bincount then counts per (image, class)."""
    B = labels.shape[0]
    return labels + (torch.arange(B, device=labels.device) * C).view(B, *([1] * (labels.ndim - 1)))


def _count(idx: torch.Tensor, B: int, C: int) -> torch.Tensor:
    return torch.bincount(idx.flatten(), minlength=B * C).view(B, C)


def _label_counts(pred: torch.Tensor, target: torch.Tensor, C: int, valid: torch.Tensor | None) -> DiceStats:
    """Counts of two label maps by one bincount per sum (no one-hot)."""
    B = pred.shape[0]
    pi, ti, same = _image_class_index(pred, C), _image_class_index(target, C), pred == target
    if valid is not None:
        pi, ti, same = pi[valid], ti[valid], same[valid]
    return DiceStats(_count(ti[same], B, C), _count(pi, B, C), _count(ti, B, C))


def single_counts(
    x, name: str, *, num_classes=None, threshold=None, include_background=True
) -> tuple[torch.Tensor, int]:
    """Voxel counts (B, C) int64 of one hard segmentation and its number of spatial axes."""
    h = harden(x, name, threshold=threshold)
    if h.maps is not None:
        C = _num_classes(num_classes, h.maps.shape[1], 0)
        counts, ndim = h.maps.sum(tuple(range(2, h.maps.ndim))), h.maps.ndim - 2
    else:
        lab = _present(h.labels)
        ndim = lab.ndim - 1
        C = _num_classes(num_classes, None, 1 + _max_label(lab, None))
        _check_labels(lab, C, name)
        B = lab.shape[0]
        if C == 1:
            counts = (lab == 1).reshape(B, -1).sum(1, keepdim=True)
        else:
            counts = _count(_image_class_index(lab, C), B, C)
    counts = counts.long()
    if not include_background and counts.shape[1] > 1:
        counts = counts[:, 1:]
    return counts, ndim
