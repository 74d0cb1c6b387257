"""Scoring a pool of partially annotated cases: each case only on the labels it annotates.

``annotated_labels.json`` (the file ``phidice nnunet merge`` writes and the missing-label trainers read) maps a
case to the labels it annotates, as values or dataset.json names; a case not listed annotates every label. An
unannotated label of a case is neither a hit nor an empty reference: its reference voxels read "background or
this label", so its DSC, volumes and surface distances are left out (NaN) and it does not enter the pooled
DSC_BI. Names are resolved with the ``dataset.json`` beside the file; the source of each case comes from the
``merge_provenance.json`` beside it (else from a ``<tag>__`` case-id prefix), for per-source rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PoolAnnotations", "annotated_mask", "read_pool_annotations"]


@dataclass(frozen=True)
class PoolAnnotations:
    """Per listed case, its annotated label values (background excluded); per case, its source if known."""

    path: str
    cases: Mapping[str, frozenset]
    sources: Mapping[str, str]

    def source_of(self, case: str) -> str:
        if case in self.sources:
            return self.sources[case]
        return case.split("__", 1)[0] if "__" in case else "unlisted"


def _label_names(folder: Path) -> dict:
    path = folder / "dataset.json"
    if not path.is_file():
        return {}
    labels = json.loads(path.read_text(encoding="utf-8")).get("labels", {})
    return {str(k): v for k, v in labels.items() if isinstance(v, int) and not isinstance(v, bool)}


def _value(item, names: dict, where: str) -> int:
    if isinstance(item, str):
        if item not in names:
            hint = f" ({', '.join(sorted(names))})" if names else " (no dataset.json beside the file names the labels)"
            raise ValueError(f"{where}: label name {item!r} is not in dataset.json's labels{hint}")
        return int(names[item])
    if isinstance(item, bool) or not isinstance(item, int) or item < 0:
        raise ValueError(f"{where}: labels must be label values (integers ≥ 0) or names; got {item!r}")
    return item


def read_pool_annotations(path) -> PoolAnnotations:
    """Read ``--annotated``: the annotation file and, beside it, dataset.json (names) and merge_provenance.json."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--annotated: annotation file not found: {str(path)!r}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"--annotated {str(path)!r}: not valid JSON ({err})") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"--annotated {str(path)!r}: expected an object case → list of annotated labels")
    names = _label_names(path.parent)
    cases = {}
    for case, items in data.items():
        where = f"--annotated {str(path)!r}, case {case!r}"
        if not isinstance(items, list):
            raise ValueError(f"{where}: expected a list of annotated labels; got {items!r}")
        cases[str(case)] = frozenset(_value(i, names, where) for i in items) - {0}
    sources = {}
    prov = path.parent / "merge_provenance.json"
    if prov.is_file():
        recorded = json.loads(prov.read_text(encoding="utf-8")).get("cases", {})
        sources = {str(c): str(r.get("source", "")) for c, r in recorded.items() if isinstance(r, Mapping)}
    return PoolAnnotations(str(path), cases, sources)


def annotated_mask(pool: PoolAnnotations, cases, classes) -> tuple[np.ndarray, list]:
    """(N, C) bool: case i annotates reported class ``classes[j]``; and notes (listed cases not evaluated)."""
    mask = np.ones((len(cases), len(classes)), dtype=bool)
    for i, case in enumerate(cases):
        if case in pool.cases:
            mask[i] = [c == 0 or c in pool.cases[case] for c in classes]
    notes = []
    unseen = sorted(set(pool.cases) - set(cases))
    if unseen:
        notes.append(
            f"{len(unseen)} case(s) of {pool.path} are not among the evaluated cases: "
            + ", ".join(unseen[:5])
            + (" …" if len(unseen) > 5 else "")
        )
    return mask, notes
