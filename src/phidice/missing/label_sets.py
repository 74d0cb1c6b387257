"""Fidon et al.'s label-set form → the per-sample form (leaf target, ``annotated``).

A label map may hold *superset* labels (numbers ≥ C, the leaf labels being 0 … C−1) with a map
``{superset: [leaf labels]}``: a voxel labelled with a superset is "one of these leaves". The per-sample
form can say exactly one kind of thing: "in sample b, class u is not annotated, so its voxels are
labelled background". Hence a superset converts only when it is {0} ∪ U (background plus classes U):
its voxels become label 0 and U become unannotated in that sample. Any other superset (one without
the background, e.g. {2, 3}) is a voxel-wise constraint with no per-sample equivalent and is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from phidice.core.supersets import check_superset_map


def annotated_from_label_sets(
    labels: torch.Tensor,
    labels_superset_map: Mapping[int, Sequence[int]],
    num_classes: int,
    *,
    ignore_index: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a label map with superset labels to ``(target, annotated)`` for the missing-label losses.

    Args:
        labels: integer label map (B, *spatial); leaf labels in [0, num_classes), superset labels as keys
            of ``labels_superset_map`` (Fidon's convention: larger than every leaf label).
        labels_superset_map: {superset label: [leaf labels]}, each superset of the form {0} ∪ U.
        num_classes: C, the number of leaf labels (the network's channels, background included).
        ignore_index: a label left untouched (and not counted), for use with the losses' ``ignore_index``.

    Returns:
        target (B, *spatial) int64 with superset voxels set to 0, and annotated (B, C) bool where class u
        is False in every sample that holds a superset containing u.

    A sample that holds a superset {0} ∪ U and also voxels labelled u ∈ U annotates u only partly, which
    the per-sample form cannot express: an error. Plain background voxels next to superset voxels are
    weakened to "background or U" (sound, but less informative).
    """
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(
            f"labels must be an integer tensor (B, *spatial); got "
            f"{labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__}"
        )
    if labels.ndim < 2:
        raise ValueError(f"labels must have shape (B, *spatial); got {tuple(labels.shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer ≥ 2 (background and at least one class); got {num_classes!r}")
    supersets = check_superset_map(labels_superset_map, num_classes)
    B = labels.shape[0]
    device = labels.device
    keys = sorted(supersets)
    L = (keys[-1] + 1) if keys else num_classes
    flat = labels.reshape(B, -1).long()
    valid = torch.ones_like(flat, dtype=torch.bool) if ignore_index is None else flat != ignore_index
    known = torch.zeros(L, dtype=torch.bool, device=device)
    known[:num_classes] = True
    if keys:
        known[torch.tensor(keys, device=device)] = True
    in_range = (flat >= 0) & (flat < L)
    bad = valid & ~(in_range & known[flat.clamp(0, L - 1)])
    if bool(bad.any()):
        values = sorted(set(flat[bad].unique().tolist()))[:8]
        raise ValueError(
            f"labels hold {values}, which are neither leaf labels [0, {num_classes - 1}] nor superset labels {keys}"
        )
    # present[b, l]: sample b holds label l (ignored voxels excepted)
    index = flat.clamp(0, L - 1) + L * torch.arange(B, device=device).unsqueeze(1)
    present = torch.bincount(index[valid], minlength=B * L).view(B, L) > 0
    members = torch.zeros(L, num_classes, device=device)  # members[s, c] = 1 when c ∈ superset s, c ≥ 1
    for key in keys:  # dict parsing only: one row per superset label
        members[key, supersets[key][1:]] = 1.0
    unannotated = (present.float() @ members) > 0
    clash = unannotated & present[:, :num_classes]
    if bool(clash.any()):
        pairs = [tuple(p) for p in clash.nonzero().tolist()][:6]
        raise ValueError(
            f"(sample, class) {pairs}: the class is labelled in some voxels and part of a superset "
            f"{{0, …}} in others, i.e. annotated only partly in that sample — the per-sample "
            f"'annotated' form cannot express this"
        )
    is_super = valid & (flat >= num_classes)
    target = torch.where(is_super, torch.zeros_like(flat), flat).view(labels.shape)
    return target, ~unannotated
