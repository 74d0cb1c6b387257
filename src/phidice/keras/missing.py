"""Missing labels on Keras tensors: the ``annotated`` flags, the leaf keep mask, the marginal merge and
Fidon's superset labels, as :mod:`phidice.missing` defines them.

``annotated`` is a (B, C) bool tensor: which classes each sample annotates (background column included).
A Keras loss receives only ``(y_true, y_pred)`` from ``model.fit``, so there the flags travel inside the
labels in Fidon et al.'s label-set form: a superset label s ≥ C with ``labels_superset_map={s: [0, u, …]}``
marks a voxel "background or one of u, …", and makes u unannotated in that sample (see
:func:`phidice.annotated_from_label_sets`). A direct call may pass ``annotated=`` instead.
"""

from __future__ import annotations

import numpy as np

from keras import ops
from phidice.core.rules import has_background
from phidice.core.supersets import check_superset_map
from phidice.keras.checks import Checks, concrete, dtype_of, is_integer, shapes_agree
from phidice.keras.layout import Layout
from phidice.keras.sums import is_map, label_tensor


def all_annotated(y_pred, layout: Layout):
    """(B, C) True flags for a batch whose size may be known only at run time."""
    corner = y_pred
    for _ in range(len(y_pred.shape) - 2):  # one voxel's (B, C): the shape without reading the volume
        corner = corner[:, :, 0] if layout.first else corner[:, 0]
    return ops.ones_like(corner, dtype="bool")


def check_annotated(annotated, pred_shape, layout: Layout, activation, checks: Checks):
    """``annotated`` as a (B, C) bool tensor, checked as :func:`phidice.missing.check_annotated` checks it."""
    B, C = pred_shape[0], layout.channels(pred_shape)
    try:
        annotated = ops.convert_to_tensor(annotated)
    except (TypeError, ValueError) as err:
        raise TypeError(f"annotated must be a (B, C) bool tensor; got {type(annotated).__name__}") from err
    dtype = dtype_of(annotated)
    if dtype != "bool" and not is_integer(dtype):
        raise TypeError(
            f"annotated must be a bool tensor (or integers 0/1) of shape (B, C); got dtype {dtype} — "
            f"use `annotated > 0.5` to say which classes are annotated"
        )
    if not shapes_agree(tuple(annotated.shape), (B, C)):
        raise ValueError(
            f"annotated must have shape (B, C) = {(B, C)}, one flag per sample and class (background "
            f"column included); got shape {tuple(annotated.shape)}"
        )
    if dtype != "bool":
        checks.require(
            ops.logical_and(annotated != 0, annotated != 1),
            lambda: ValueError(f"annotated of integer dtype {dtype} must hold only 0 and 1"),
        )
        annotated = ops.not_equal(annotated, 0)

    def rows(bad):
        return np.flatnonzero(concrete(bad)).tolist()

    nothing = ops.logical_not(ops.any(annotated, axis=1))
    checks.require(
        nothing,
        lambda: ValueError(
            f"annotated: sample(s) {rows(nothing)} have no class annotated at all; such a sample carries no label "
            f"information — leave it out of the batch"
        ),
    )
    if has_background(C, activation):
        no_bg = ops.logical_not(annotated[:, 0])
        checks.require(
            no_bg,
            lambda: ValueError(
                f"annotated[:, 0] (background) must be True; got False for sample(s) {rows(no_bg)}. The background "
                f"is always annotated: it is what unannotated classes are labelled as in the target"
            ),
        )
    return annotated


def check_unannotated_labels(target_sum, annotated, checks: Checks) -> None:
    """Error when a class marked unannotated has labels (target mass under the mask) in its sample."""
    bad = ops.logical_and(ops.stop_gradient(target_sum) > 0, ops.logical_not(annotated))

    def error():
        pairs = [tuple(p) for p in np.argwhere(concrete(bad)).tolist()]
        shown = ", ".join(str(p) for p in pairs[:6]) + (" ..." if len(pairs) > 6 else "")
        return ValueError(
            f"y_true has labels of classes marked unannotated, at (sample, class) {shown}: label "
            f"unannotated classes as background (0) in y_true, or mark them annotated"
        )

    checks.require(bad, error)


def split_supersets(y_true, supersets: dict, pred_shape, ignore_index, layout: Layout, checks: Checks):
    """Superset labels → (labels (B, *S) int32, annotated (B, C) bool), as :func:`phidice.annotated_from_label_sets`.

    A voxel with superset label s ≥ C becomes background (0), and every class of s other than 0 becomes
    unannotated in its sample. ``ignore_index`` voxels are left as they are and not counted.
    """
    C = layout.channels(pred_shape)
    supersets = check_superset_map(supersets, C)
    y_true = ops.convert_to_tensor(y_true)
    if is_map(y_true, pred_shape, layout) and C > 1:
        raise ValueError(
            "labels_superset_map needs integer label targets (superset labels are values ≥ C); "
            f"got a map of y_pred's shape {tuple(y_true.shape)}"
        )
    if dtype_of(y_true) == "bool":
        y_true = ops.cast(y_true, "int32")
    labels = label_tensor(y_true, pred_shape, layout, checks)
    valid = ops.ones_like(labels, dtype="bool") if ignore_index is None else ops.not_equal(labels, ignore_index)
    keys = sorted(supersets)
    spatial = tuple(range(1, len(labels.shape)))
    is_key = [ops.logical_and(valid, ops.equal(labels, k)) for k in keys]
    present = ops.stack([ops.any(k, axis=spatial) for k in is_key], axis=1)  # (B, K): sample b holds superset k
    members = np.zeros((len(keys), C), dtype="float32")
    for row, key in enumerate(keys):
        members[row, supersets[key][1:]] = 1.0
    unannotated = ops.matmul(ops.cast(present, "float32"), ops.convert_to_tensor(members)) > 0
    is_super = is_key[0]
    for more in is_key[1:]:
        is_super = ops.logical_or(is_super, more)
    leaf = ops.logical_and(valid, ops.logical_and(labels >= 0, labels < C))
    unknown = ops.logical_and(valid, ops.logical_not(ops.logical_or(leaf, is_super)))

    def unknown_error():
        values = sorted(set(np.asarray(concrete(labels))[np.asarray(concrete(unknown))].tolist()))[:8]
        return ValueError(
            f"y_true holds labels {values}, which are neither leaf labels [0, {C - 1}] nor superset labels {keys}"
        )

    checks.require(unknown, unknown_error)
    if checks.enabled:
        onehot = ops.one_hot(ops.where(leaf, labels, 0), C, dtype="float32") * ops.cast(
            ops.expand_dims(leaf, -1), "float32"
        )
        labelled = ops.max(onehot, axis=spatial) > 0  # (B, C): sample b holds leaf label c
        clash = ops.logical_and(unannotated, labelled)

        def clash_error():
            pairs = [tuple(p) for p in np.argwhere(concrete(clash)).tolist()][:6]
            return ValueError(
                f"(sample, class) {pairs}: the class is labelled in some voxels and part of a superset "
                f"{{0, …}} in others, i.e. annotated only partly in that sample — the per-sample "
                f"'annotated' form cannot express this"
            )

        checks.require(clash, clash_error)
    return ops.where(is_super, 0, labels), ops.logical_not(unannotated)
