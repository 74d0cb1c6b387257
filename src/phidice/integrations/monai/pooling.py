"""Pooling partially labelled datasets for MONAI: one data list, labels remapped on the fly.

:func:`pool_data_list` reads nnU-Net raw dataset folders and/or Decathlon-style data lists (a JSON file with
``"labels"`` — value → name, as the Medical Segmentation Decathlon's dataset.json — and ``"training"`` items
with ``"image"`` and ``"label"``), unites their labels by name exactly as ``phidice nnunet merge`` does
(:mod:`phidice.missing.pooling`: aliases, coarse and dataset-specific labels from the same ``MAP.json``), and
returns one Decathlon-style data list whose training items carry

* ``"label_map"``: the item's source values → merged values (``-1``: undeclared), applied by
  :class:`RemapLabelsd` when the label map is loaded — no label file is rewritten;
* ``"annotated"``: the merged labels the item's source annotates, turned into the (C,) row of the
  missing-label losses by :class:`~phidice.integrations.monai.AnnotatedLabelsd`;
* ``"source"`` and ``"case"``: where the item comes from.

:func:`pooled_transforms` is the chain ``LoadImaged → EnsureChannelFirstd → RemapLabelsd → AnnotatedLabelsd``;
with :class:`~phidice.integrations.monai.PrepareBatchAnnotated` and
:class:`~phidice.integrations.monai.AnnotatedLoss` a ``SupervisedTrainer`` trains the leaf/marginal Dice on
the pool (docs/pooling.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import EnsureChannelFirstd, LoadImaged, MapTransform

from phidice.integrations.monai.losses import ANNOTATED_KEY
from phidice.integrations.monai.transforms import AnnotatedLabelsd, _case
from phidice.io import atomic_write
from phidice.missing.pooling import (
    PoolSource,
    case_ids,
    check_label_map_config,
    plan_labels,
    read_label_map_config,
    source_settings,
)
from phidice.missing.raw_dataset import read_raw_dataset, resolve_raw_dataset

__all__ = ["LABEL_MAP_KEY", "RemapLabelsd", "pool_data_list", "pooled_transforms"]

LABEL_MAP_KEY = "label_map"


def _decathlon_source(path: Path, override) -> tuple[PoolSource, list, list, dict]:
    """(labels, case ids, items, per-case annotated) of a Decathlon-style data list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    labels = override if override is not None else data.get("labels") if isinstance(data, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(
            f'{path}: a data list needs \'labels\' (value → name, e.g. {{"0": "background", "1": '
            f"\"liver\"}}) or a MAP.json 'sources' entry with 'labels'"
        )
    if override is None:  # Decathlon: value → name
        try:
            labels = {str(name): int(value) for value, name in labels.items()}
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: 'labels' must map label values to names; got {data['labels']!r}") from err
    items = data.get("training")
    if not isinstance(items, list) or not items or not all(isinstance(i, Mapping) and "label" in i for i in items):
        raise ValueError(f"{path}: 'training' must be a non-empty list of items with 'image' and 'label'")
    base = path.parent
    out, cases, annotated = [], [], {}
    for item in items:
        item = dict(item)
        for key in ("image", "label"):
            v = item.get(key)
            if v is not None:
                item[key] = [str(base / p) for p in v] if isinstance(v, list) else str(base / v)
        case = str(item.get("case") or Path(item["label"]).name.split(".")[0])
        if "annotated" in item:
            annotated[case] = [labels[a] if isinstance(a, str) else int(a) for a in item.pop("annotated")]
        cases.append(case)
        out.append(item)
    return PoolSource(path.stem if path.name != "dataset.json" else path.parent.name, labels), cases, out, annotated


def _raw_source(folder: Path, override) -> tuple[PoolSource, list, list, dict]:
    raw = read_raw_dataset(folder, override)
    items = [
        {
            "image": [str(p) for p in raw.images(c)] if len(raw.channel_names) > 1 else str(raw.images(c)[0]),
            "label": str(raw.label(c)),
        }
        for c in raw.cases
    ]
    return raw.pool_source(), list(raw.cases), items, {c: list(v) for c, v in raw.annotated.items()}


def _read_sources(sources, raw_root, config) -> list:
    out = []
    for i, src in enumerate(sources):
        p = Path(os.fspath(src)) if not isinstance(src, int) else None
        if p is not None and p.is_file():
            key = p.stem if p.name != "dataset.json" else p.parent.name
            out.append(_decathlon_source(p, source_settings(config, key, i + 1)["labels"]))
        else:
            folder = resolve_raw_dataset(src, raw_root)
            out.append(_raw_source(folder, source_settings(config, folder.name, i + 1)["labels"]))
    return out


def pool_data_list(sources: Sequence, out=None, *, labels=None, raw_root=None) -> dict:
    """One MONAI data list for ``sources`` (nnU-Net raw folders, ids/names under ``raw_root`` or
    ``$nnUNet_raw``, or Decathlon-style data list files); written to ``out`` (atomically) when given.

    Args:
        labels: a ``MAP.json`` path or its content (see :mod:`phidice.missing.pooling`).

    Returns:
        The data list: ``labels`` (merged value → name), ``numTraining``, ``training`` items with
        ``label_map``, ``annotated``, ``source``, ``case``, and ``phidice_pool`` (the mapping).
    """
    raw_root = os.environ.get("nnUNet_raw") if raw_root is None else os.fspath(raw_root)
    config = None
    if labels is not None:
        config = (
            read_label_map_config(labels) if isinstance(labels, (str, os.PathLike)) else check_label_map_config(labels)
        )
    read = _read_sources(sources, raw_root, config)
    plan = plan_labels([r[0] for r in read], config)
    ids = case_ids([r[1] for r in read], [r[0].key for r in read])
    training = []
    for s, ((src, cases, items, annotated), merged) in enumerate(zip(read, ids)):
        lut = plan.luts[s].tolist()
        for case, item, new_id in zip(cases, items, merged):
            training.append(
                {
                    **item,
                    "case": new_id,
                    "source": src.key,
                    LABEL_MAP_KEY: lut,
                    ANNOTATED_KEY: plan.annotated(s, annotated.get(case)),
                }
            )
    data = {
        "name": "phidice pool",
        "labels": {str(v): n for v, n in enumerate(plan.names)},
        "numTraining": len(training),
        "training": training,
        "phidice_pool": plan.record(),
    }
    if out is not None:
        atomic_write(out, json.dumps(data, indent=2) + "\n")
    return data


class RemapLabelsd(MapTransform):
    """``d[keys]`` (a loaded label map in its source's values) → merged values, by ``d[map_key]``.

    ``d[map_key][v]`` is the merged value of source value v (``-1``: undeclared); the list is removed from
    the item (lists of different lengths would not collate). A voxel of an undeclared value is a ValueError
    naming the case. The label keeps its type (MetaTensor metadata included) and dtype.
    """

    def __init__(self, keys: Hashable | Sequence[Hashable] = "label", map_key: Hashable = LABEL_MAP_KEY) -> None:
        super().__init__(keys)
        self.map_key = map_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.map_key not in d:
            raise KeyError(
                f"RemapLabelsd{_case(d)}: the item has no {self.map_key!r} (items of pool_data_list "
                f"carry it); its keys are {list(d)}"
            )
        lut = torch.as_tensor(np.asarray(d.pop(self.map_key), dtype=np.int64))
        for key in self.key_iterator(d):
            label = d[key]
            values = torch.as_tensor(label).long()
            bad = (values < 0) | (values >= len(lut))
            bad = bad | (lut[values.clamp(0, len(lut) - 1)] < 0)
            if bool(bad.any()):
                shown = sorted(set(torch.as_tensor(label)[bad].long().tolist()))[:8]
                raise ValueError(
                    f"RemapLabelsd{_case(data)}: d[{key!r}] holds label value(s) {shown} that its "
                    f"source does not declare"
                )
            new = lut[values.clamp(0, len(lut) - 1)].to(torch.as_tensor(label).dtype)
            if isinstance(label, torch.Tensor):
                d[key] = label.clone()
                d[key].copy_(new)  # a MetaTensor keeps its metadata
            else:
                d[key] = new.numpy()
        return d


def pooled_transforms(num_classes: int, *, image_key: str = "image", label_key: str = "label") -> list:
    """``LoadImaged → EnsureChannelFirstd → RemapLabelsd → AnnotatedLabelsd`` for items of
    :func:`pool_data_list`; append spatial/intensity transforms after them. The rows have one entry per merged
    label, background (always annotated) included: channel c is label c. Per-class sigmoid outputs use the
    same rows with a background channel that the loss leaves out (``include_background=False``)."""
    keys = [image_key, label_key]
    return [
        LoadImaged(keys, image_only=True),
        EnsureChannelFirstd(keys),
        RemapLabelsd(label_key),
        AnnotatedLabelsd(ANNOTATED_KEY, num_classes, label_key=label_key),
    ]
