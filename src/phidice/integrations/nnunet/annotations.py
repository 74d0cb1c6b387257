"""Which labels each case annotates: ``annotated_labels.json`` in the nnU-Net dataset folder.

Format — a JSON object, case identifier → the labels that case annotates (label values or dataset.json label
names); the background is always annotated, since an unannotated label's voxels are labelled 0::

    {
      "BraTS18_LGG_0001": [],
      "patient012_frame11": [1, 3],
      "patient013_frame09": ["LV", "RV"]
    }

Cases not listed annotate every label. A region name stands for all its labels. The trainers look the file up
in ``$nnUNet_raw/<dataset>/`` and ``$nnUNet_preprocessed/<dataset>/`` (nnU-Net's preprocessing does not copy
it; put a copy there when training without the raw data — two differing copies are an error).

For label training, channel c (label c) is annotated in a case when c is listed (channel 0 always); for
region-based training a region is annotated when every label of it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from phidice.integrations.nnunet.task import NNUNetTask

ANNOTATION_FILE = "annotated_labels.json"


@dataclass(frozen=True)
class Annotations:
    """Annotated labels per listed case (background included), read from ``path``."""

    path: str
    cases: Mapping[str, frozenset]
    sha256: str

    def labels_of(self, case: str, task: NNUNetTask) -> frozenset:
        return self.cases.get(case, frozenset(task.labels))

    def channel_flags(self, case: str, task: NNUNetTask) -> tuple[bool, ...]:
        return channel_flags(self.labels_of(case, task), task)

    def rows(self, keys: Sequence[str], task: NNUNetTask, device=None) -> torch.Tensor:
        """(B, C) bool: the annotated output channels of each case in ``keys`` (a batch's ``keys``)."""
        return torch.tensor([self.channel_flags(str(k), task) for k in keys], dtype=torch.bool, device=device)

    def record(self) -> dict:
        """JSON-able summary for the checkpoint and the log."""
        return {"path": self.path, "sha256": self.sha256, "cases": {k: sorted(v) for k, v in self.cases.items()}}


def channel_flags(annotated_labels: Iterable[int], task: NNUNetTask) -> tuple[bool, ...]:
    """Annotated output channels for a case annotating ``annotated_labels`` (background implied)."""
    have = set(annotated_labels) | {0}
    return tuple(all(v in have for v in labels) for labels in task.channel_labels)


def _resolve_label(item, task: NNUNetTask, where: str) -> tuple[int, ...]:
    names = task.names()
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise ValueError(
            f"{where}: labels must be label values (integers) or label names from dataset.json; got {item!r}"
        )
    if isinstance(item, str):
        if item not in names:
            raise ValueError(
                f"{where}: label name {item!r} is not in dataset.json's labels "
                f"({', '.join(repr(n) for n in names) or 'none'})"
            )
        return names[item]
    if item == task.ignore_label:
        raise ValueError(f"{where}: label {item} is dataset.json's ignore label, not a class")
    if item not in task.labels:
        raise ValueError(f"{where}: label {item} is not in dataset.json (labels {list(task.labels)})")
    return (item,)


def parse_annotations(
    data, task: NNUNetTask, *, path: str = ANNOTATION_FILE, case_ids: Iterable[str] | None = None
) -> Annotations:
    """Validate the decoded JSON ``data`` against ``task`` (and the dataset's ``case_ids`` when given)."""
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{path}: expected a JSON object mapping case identifiers to lists of annotated labels; "
            f"got {type(data).__name__}"
        )
    cases: dict[str, frozenset] = {}
    for case, labels in data.items():
        where = f"{path}, case {case!r}"
        if not isinstance(labels, list):
            raise ValueError(f"{where}: expected a list of annotated labels; got {labels!r}")
        have = {0}
        for item in labels:
            have.update(_resolve_label(item, task, where))
        cases[str(case)] = frozenset(have)
    if case_ids is not None:
        known = set(case_ids)
        unknown = sorted(set(cases) - known)
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            raise ValueError(
                f"{path}: {len(unknown)} case(s) not in the dataset: {shown} (the dataset has {len(known)} cases)"
            )
    raw = json.dumps({k: sorted(v) for k, v in sorted(cases.items())}, sort_keys=True).encode()
    return Annotations(str(path), cases, hashlib.sha256(raw).hexdigest())


def read_annotations(path, task: NNUNetTask, case_ids: Iterable[str] | None = None) -> Annotations:
    """Read and validate an ``annotated_labels.json``; errors name the file, the case and the label."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
    return parse_annotations(data, task, path=path, case_ids=case_ids)


def find_annotation_file(dataset_name: str, *, raw_root: str | None, preprocessed_root: str | None) -> str:
    """The dataset's ``annotated_labels.json`` in the raw or the preprocessed dataset folder.

    FileNotFoundError listing the places searched when there is none; ValueError when both hold one and they
    differ.
    """
    candidates = [os.path.join(root, dataset_name, ANNOTATION_FILE) for root in (raw_root, preprocessed_root) if root]
    found = [p for p in candidates if os.path.isfile(p)]
    if not found:
        searched = ", ".join(repr(p) for p in candidates) or "nowhere (nnUNet_raw and nnUNet_preprocessed are unset)"
        raise FileNotFoundError(
            f"the missing-label trainers need {ANNOTATION_FILE} (case → annotated labels) in the dataset folder; "
            f"searched {searched}. Write it (see docs/nnunet.md, or `phidice nnunet make-partial`), or use "
            f"nnUNetTrainerPhiDice for fully annotated data"
        )
    if len(found) == 2:
        with open(found[0], "rb") as a, open(found[1], "rb") as b:
            if json.loads(a.read() or b"null") != json.loads(b.read() or b"null"):
                raise ValueError(f"{found[0]!r} and {found[1]!r} differ; keep one, or make them equal")
    return found[0]
