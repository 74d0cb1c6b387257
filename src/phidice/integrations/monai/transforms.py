"""A dictionary transform from a case's annotated labels (a list in the data list) to its ``annotated`` row."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from numbers import Integral

import numpy as np
import torch
from monai.transforms import MapTransform

from phidice.integrations.monai.losses import ANNOTATED_KEY

__all__ = ["AnnotatedLabelsd"]


def _case(d: Mapping) -> str:
    """`` (case 'path')`` for the first file path in the case, or ``""``."""
    for value in d.values():
        name = value if isinstance(value, str) else getattr(value, "meta", {}).get("filename_or_obj")
        if isinstance(name, str) and name:
            return f" (case {name!r})"
    return ""


class AnnotatedLabelsd(MapTransform):
    """``d[keys]`` (the labels annotated in this case) → ``d[annotated_key]``, a (C,) bool row.

    MONAI's ``DataLoader`` collates the rows into the (B, C) ``annotated`` argument of ``LeafDiceLoss``,
    ``MarginalDiceLoss`` and their Dice + CE forms (see :class:`PrepareBatchAnnotated`). The list itself is
    removed: lists of different lengths would not collate. Errors name the case by the first file path
    found in it (a path string, or a MetaTensor's ``filename_or_obj``).

    Args:
        keys: the one key holding the case's annotated labels: a list of label values in [0, C) (or of
            names, with ``names``), e.g. ``{"image": ..., "label": ..., "annotated_labels": [1, 3]}``.
        num_classes: C, the network's output channels (background included).
        annotated_key: where the row goes.
        background: channel 0 is a background that every case annotates (softmax, the losses' rule): it is
            set whether listed or not. False for independent sigmoid channels: the list is taken as it is.
        names: ``{name: label}`` (e.g. a dataset.json's ``"labels"``) when the lists hold names.
        default: the labels of a case without ``keys``: a list, or ``"all"``. None (default): such a
            case is an error.
        label_key: if given, the case's label map (label values, any shape; not a one-hot or multi-channel
            map) is checked to hold no voxel of an unlisted label — a data error then names the case, where
            the loss can name only its place in the batch.

    Raises:
        KeyError: the case lacks ``keys`` (and no ``default``), or ``label_key``.
        ValueError / TypeError: a label outside [0, C), an unknown name, a list that is not a list of
            labels, a label map with voxels of an unannotated label.
    """

    num_classes: int
    annotated_key: Hashable
    background: bool
    names: dict[str, int] | None
    label_key: Hashable | None
    default: torch.Tensor | None

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        num_classes: int,
        *,
        annotated_key: Hashable = ANNOTATED_KEY,
        background: bool = True,
        names: Mapping[str, int] | None = None,
        default: Sequence | str | None = None,
        label_key: Hashable | None = None,
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(
                f"AnnotatedLabelsd reads one key (the case's list of annotated labels); got keys={list(self.keys)}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer (the network's channels); got {num_classes!r}")
        if background not in (True, False):
            raise TypeError(f"background must be True or False; got {background!r}")
        self.num_classes = int(num_classes)
        self.annotated_key = annotated_key
        self.background = bool(background) and self.num_classes > 1
        self.names = None  # names map to labels, not to other names
        self.names = self._check_names(names)
        self.label_key = label_key
        self.default = None if default is None else self._row(default, "default")

    def _check_names(self, names):
        if names is None:
            return None
        if not isinstance(names, Mapping):
            raise TypeError(f"names must be a mapping {{name: label}}; got {type(names).__name__}")
        out = {}
        for name, label in names.items():
            out[str(name)] = self._label(label, f"names[{name!r}]")
        return out

    def _label(self, value, where: str) -> int:
        if isinstance(value, str):
            if self.names is None:
                raise TypeError(
                    f"{where}: label {value!r} is a name, but AnnotatedLabelsd got no names={{name: label}} mapping"
                )
            if value not in self.names:
                raise ValueError(f"{where}: unknown label name {value!r}; the names are {sorted(self.names)}")
            return self.names[value]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Integral, np.integer)):
            raise TypeError(f"{where}: a label must be an integer (or a name); got {value!r}")
        if not 0 <= int(value) < self.num_classes:
            raise ValueError(
                f"{where}: label {int(value)} is outside [0, {self.num_classes - 1}] (num_classes={self.num_classes})"
            )
        return int(value)

    def _row(self, labels, where: str) -> torch.Tensor:
        if isinstance(labels, str) and labels == "all":
            return torch.ones(self.num_classes, dtype=torch.bool)
        if isinstance(labels, (torch.Tensor, np.ndarray)):
            labels = labels.tolist()
        if isinstance(labels, (str, bytes, Mapping)) or not isinstance(labels, Sequence):
            raise TypeError(f"{where} must be a list of annotated labels (or 'all'); got {labels!r}")
        row = torch.zeros(self.num_classes, dtype=torch.bool)
        for i, value in enumerate(labels):
            row[self._label(value, f"{where}[{i}]")] = True
        if self.background:
            row[0] = True
        if not bool(row.any()):
            raise ValueError(f"{where} lists no label: a case with nothing annotated carries no label information")
        return row

    def _check_label_map(self, d, row: torch.Tensor, where: str) -> None:
        if self.label_key not in d:
            raise KeyError(f"AnnotatedLabelsd: label_key {self.label_key!r} is not in the case (keys: {list(d)})")
        values = torch.unique(torch.as_tensor(d[self.label_key])).tolist()
        bad = sorted(int(v) for v in values if v == int(v) and 0 <= v < self.num_classes and not row[int(v)])
        if bad:
            raise ValueError(
                f"{where}: the label map d[{self.label_key!r}] has voxels of label(s) {bad}, which the "
                f"case does not list as annotated; label them 0 or list them"
            )

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        key = self.keys[0]
        where = f"AnnotatedLabelsd{_case(d)}: d[{key!r}]"
        if key in d:
            row = self._row(d[key], where)
        elif self.default is not None:
            row = self.default.clone()
        else:
            raise KeyError(
                f"{where} is missing (the case's keys: {list(d)}); give each case its annotated labels, "
                f"or default='all' for cases without the key"
            )
        if self.label_key is not None:
            self._check_label_map(d, row, where)
        d.pop(key, None)  # lists of different lengths would not collate
        d[self.annotated_key] = row
        return d
