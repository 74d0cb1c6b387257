"""What nnU-Net's dataset.json and plans say about the network outputs: channels, regions, ignore label.

:class:`NNUNetTask` is read either from nnU-Net's own ``LabelManager`` (in the trainers) or from the ``labels``
entry of a dataset.json (the command line, tests), following nnU-Net's rules: label 0 is the background, an
``"ignore"`` entry is the ignore label (the largest label value), and any entry that is a list of more than one
label makes the training region-based (one sigmoid channel per foreground region).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class NNUNetTask:
    """The loss-relevant facts of an nnU-Net dataset and configuration.

    ``channel_labels[c]`` are the label values output channel c stands for: ``(c,)`` for label training
    (softmax over labels 0..K−1, channel 0 the background), the labels of region c for region-based training
    (sigmoid per region, no background channel).
    """

    channel_labels: tuple[tuple[int, ...], ...]
    regions: bool
    ignore_label: int | None
    batch_dice: bool
    labels: tuple[int, ...]  # every label value (background included, ignore label excluded)
    label_names: tuple[tuple[str, tuple[int, ...]], ...] = ()  # dataset.json names → label values

    @property
    def num_channels(self) -> int:
        return len(self.channel_labels)

    @property
    def activation(self) -> Literal["softmax", "sigmoid"]:
        return "sigmoid" if self.regions else "softmax"

    def names(self) -> dict[str, tuple[int, ...]]:
        return dict(self.label_names)

    @classmethod
    def from_label_dict(
        cls, labels: Mapping | None, *, batch_dice: bool = False, where: str = "dataset.json"
    ) -> NNUNetTask:
        """From the ``labels`` entry of a dataset.json (name → label value or list of values)."""
        if not isinstance(labels, Mapping) or not labels:
            raise ValueError(f"{where}: 'labels' must be a non-empty mapping name → label; got {labels!r}")
        if "background" not in labels:
            raise ValueError(f"{where}: 'labels' has no 'background' entry (label 0)")
        names: dict[str, tuple[int, ...]] = {}
        ignore = None
        for name, value in labels.items():
            vals = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            if not vals or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals):
                raise ValueError(
                    f"{where}: label {name!r} must be a non-negative integer or a list of them; got {value!r}"
                )
            if name == "ignore":
                if len(vals) != 1:
                    raise ValueError(f"{where}: the ignore label must be one integer; got {value!r}")
                ignore = vals[0]
                continue
            names[str(name)] = vals
        if names["background"] != (0,):
            raise ValueError(f"{where}: the background label must be 0; got {labels['background']!r}")
        all_labels = tuple(sorted({v for vals in names.values() for v in vals}))
        if ignore is not None and ignore != max(all_labels) + 1:
            raise ValueError(
                f"{where}: the ignore label must be the largest label value ({max(all_labels) + 1}); got {ignore}"
            )
        regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
        if regions:
            channels = []
            for vals in names.values():
                if set(vals) == {0}:
                    continue  # the background region has no channel
                channels.append(vals)
        else:
            if all_labels != tuple(range(len(all_labels))):
                raise ValueError(f"{where}: labels must be consecutive integers 0..K-1; got {list(all_labels)}")
            channels = [(v,) for v in all_labels]
        return cls(tuple(channels), regions, ignore, bool(batch_dice), all_labels, tuple(names.items()))

    @classmethod
    def from_label_manager(cls, label_manager, *, batch_dice: bool, label_dict: Mapping | None = None) -> NNUNetTask:
        """From nnU-Net's ``LabelManager`` (the trainer's ``self.label_manager``)."""
        if label_manager.has_regions:
            channels = tuple(
                tuple(int(v) for v in (r if isinstance(r, (list, tuple)) else (r,)))
                for r in label_manager.foreground_regions
            )
        else:
            channels = tuple((int(v),) for v in label_manager.all_labels)
        label_dict = label_dict if label_dict is not None else getattr(label_manager, "label_dict", {})
        names = tuple(
            (str(k), tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else (v,))))
            for k, v in label_dict.items()
            if k != "ignore"
        )
        ignore = label_manager.ignore_label
        return cls(
            channels,
            bool(label_manager.has_regions),
            None if ignore is None else int(ignore),
            bool(batch_dice),
            tuple(int(v) for v in label_manager.all_labels),
            names,
        )
