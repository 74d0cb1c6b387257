"""Fidon et al.'s superset labels: the check of a ``{superset label: [leaf labels]}`` map, shared by
:func:`phidice.annotated_from_label_sets` and the Keras missing-label losses. No torch import.

A superset converts to the per-sample ``annotated`` form only when it is {0} ∪ U (background plus the
classes U), since its voxels then read "background or one of U" — see :mod:`phidice.missing.label_sets`.
"""

from __future__ import annotations

from collections.abc import Mapping


def check_superset_map(labels_superset_map, num_classes: int | None) -> dict[int, list[int]]:
    """``{superset: sorted leaf labels}``, or a TypeError/ValueError naming the bad entry.

    ``num_classes`` (C) bounds the labels: supersets ≥ C, leaves in [0, C − 1]. With None (C not known
    yet, e.g. when a Keras loss is built before it sees its first batch) only those two bounds are skipped.
    """
    if not isinstance(labels_superset_map, Mapping):
        raise TypeError(
            f"labels_superset_map must be a dict {{superset label: [leaf labels]}}; "
            f"got {type(labels_superset_map).__name__}"
        )
    low = 1 if num_classes is None else num_classes
    out = {}
    for key, members in labels_superset_map.items():
        if isinstance(key, bool) or not isinstance(key, int) or key < low:
            leaves = "" if num_classes is None else f"; leaf labels are 0 … {num_classes - 1}"
            raise ValueError(
                f"labels_superset_map: superset label {key!r} must be an integer ≥ num_classes "
                f"({'C' if num_classes is None else num_classes}){leaves}"
            )
        try:
            members = sorted({int(m) for m in members})
        except (TypeError, ValueError) as err:
            raise TypeError(f"labels_superset_map[{key}] must be a list of leaf labels; got {members!r}") from err
        high = key - 1 if num_classes is None else num_classes - 1
        if not members or members[0] < 0 or members[-1] > high:
            raise ValueError(f"labels_superset_map[{key}] = {members} must list leaf labels in [0, {high}]")
        if members[0] != 0:
            raise ValueError(
                f"labels_superset_map[{key}] = {members} does not contain the background 0: such a superset "
                f"('one of {members}' at each voxel) is a voxel-wise constraint with no per-sample "
                f"'annotated' equivalent; only supersets {{0}} ∪ missing classes convert"
            )
        out[key] = members
    return out
