"""Pooling partially labelled datasets: one merged label set from several sources' label names.

Shared by ``phidice nnunet merge`` (label files rewritten), the MONAI data list (labels remapped on the fly) and
the pooled reproduction. Pure Python + NumPy; no file is written here.

Merged labels (the *label plan*):

* labels are united **by name**, case-insensitively ("Liver" == "liver"); the merged name keeps the first
  spelling met. The background is 0; the merged values are 1..K−1 in order of first appearance — the sources
  in the order given, each source's labels by increasing value — unless the label map (``MAP.json``) gives
  ``"order"``. The first source's values are therefore unchanged when it lists its labels first.
* ``"aliases"`` renames a source label ({"liver_tumour": "tumor"}), globally or per source; a per-source alias
  to a new name keeps that source's label dataset-specific ({"aorta": "aorta_B"}: a protocol conflict).
* ``"coarse"`` declares a source label as the union of merged labels ({"kidney": ["kidney_left",
  "kidney_right"]}). A case of that source annotates the union, not its parts: its coarse voxels become 0
  and the parts are *not annotated* in that case — the per-sample ``annotated`` form says exactly "label 0
  means background or one of the unannotated classes", which is true of both the coarse voxels and the
  rest (Fidon's superset {0} ∪ U, :mod:`phidice.missing.label_sets`). Leaf and marginal Dice then use the
  case soundly; the union's own voxels are kept in the provenance, and ``phidice evaluate --annotated`` scores
  the case on its annotated labels only.

``MAP.json``::

    {"aliases": {"liver_tumour": "tumor"},
     "coarse": {"kidney": ["kidney_left", "kidney_right"]},
     "sources": {"Dataset702_B": {"aliases": {"aorta": "aorta_B"}, "labels": {"background": 0, "edema": 1}}},
     "order": ["liver", "spleen", "kidney_left", "kidney_right", "tumor", "aorta_B"]}

``"sources"`` keys are a source's folder name, its id (``"702"``) or its position (``"1"``, from 1); a
source's ``"labels"`` replaces its dataset.json labels (e.g. a region-based dataset.json, whose base labels
have no names). Unknown keys are errors.

Case ids: an id met in more than one source is prefixed in every source that has it with the source's tag
and ``__`` — ``D701__case_001`` (``D`` + the three-digit id of ``DatasetNNN_*``, else ``S<position>``) — so
``merged.split("__", 1)`` gives back (tag, source case id); other ids are kept.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CASE_SEPARATOR",
    "LabelPlan",
    "PoolSource",
    "case_ids",
    "plan_labels",
    "read_label_map_config",
    "source_tag",
]

CASE_SEPARATOR = "__"
_DATASET_RE = re.compile(r"^Dataset(\d{3})_(.+)$")
_MAP_KEYS = {"aliases", "coarse", "sources", "order"}
_SOURCE_KEYS = {"aliases", "coarse", "labels"}


@dataclass(frozen=True)
class PoolSource:
    """One source dataset's labels: ``labels`` name → value (background 0), ``ignore`` its ignore value."""

    key: str
    labels: Mapping[str, int]
    ignore: int | None = None


@dataclass
class LabelPlan:
    """The merged labels and, per source, the value map and what its cases annotate.

    ``names[v]`` is merged label v's name (``names[0] == "background"``); ``luts[s]`` maps source s's values
    to merged values (``-1`` = not declared by the source); ``coarse[s]`` = {source name: merged parts};
    ``unannotated[s]`` the merged values no case of source s annotates.
    """

    names: list
    sources: list
    luts: list
    coarse: list
    unannotated: list
    origin: list = field(default_factory=list)  # origin[s]: {source value: merged name or "coarse: a | b"}
    ignore: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def label_dict(self) -> dict:
        """dataset.json ``labels`` of the merged dataset (name → value, with ``ignore`` when a source has one)."""
        out = {n: v for v, n in enumerate(self.names)}
        if self.ignore is not None:
            out["ignore"] = self.ignore
        return out

    def annotated(self, s: int, source_annotated: Sequence[int] | None = None) -> list:
        """Merged values a case of source s annotates (background excluded), given the source values the case
        annotates (None: all of its labels)."""
        lut, coarse_values = self.luts[s], {v for v, o in self.origin[s].items() if o.startswith("coarse:")}
        src_values = (
            [v for v in self.sources[s].labels.values() if v != 0]
            if source_annotated is None
            else [int(v) for v in source_annotated if int(v) != 0]
        )
        have = {int(lut[v]) for v in src_values if v not in coarse_values and 0 <= v < len(lut) and lut[v] > 0}
        return sorted(have - set(self.unannotated[s]))

    def remap(self, s: int, labels: np.ndarray, where: str = "label map") -> np.ndarray:
        """Source s's label map in merged values (same dtype); ValueError naming ``where`` for undeclared values."""
        labels = np.asarray(labels)
        lut = self.luts[s]
        values = np.unique(labels)
        if not np.issubdtype(labels.dtype, np.integer):  # float (or bool) maps: integer values, looked up as such
            odd = ~np.isfinite(values) | (values != np.round(values)) if values.dtype.kind == "f" else None
            if odd is not None and odd.any():
                raise ValueError(
                    f"{self.sources[s].key}: {where} holds non-integer value(s) {values[odd][:8].tolist()} "
                    f"(dtype {labels.dtype}); a label map holds integer label values"
                )
            values = values.astype(np.int64)
        bad = [int(v) for v in values if v < 0 or v >= len(lut) or lut[int(v)] < 0]
        if bad:
            declared = sorted(v for v in self.sources[s].labels.values())
            raise ValueError(
                f"{self.sources[s].key}: {where} holds label value(s) {bad[:8]} that its dataset.json "
                f"'labels' does not declare (declared: {declared})"
            )
        top = int(lut.max())
        too_small = labels.dtype == np.bool_ and top > 1
        if too_small or (np.issubdtype(labels.dtype, np.integer) and top > np.iinfo(labels.dtype).max):
            raise ValueError(
                f"{self.sources[s].key}: {where} has dtype {labels.dtype}, too small for merged value {top}"
            )
        index = labels if np.issubdtype(labels.dtype, np.integer) else labels.astype(np.int64)
        return lut[index].astype(labels.dtype, copy=False)

    def is_identity(self, s: int) -> bool:
        """True when source s's label maps keep their values (no file needs rewriting)."""
        lut = self.luts[s]
        return bool(np.array_equal(lut, np.arange(len(lut))))

    def table(self) -> list:
        """Rows (merged value, merged name, per source: its label for it, or "—")."""
        rows = []
        for v, name in enumerate(self.names):
            cells = []
            for s, src in enumerate(self.sources):
                hit = [
                    f"{n} ({sv})"
                    for n, sv in src.labels.items()
                    if 0 <= sv < len(self.luts[s])
                    and self.luts[s][sv] == v
                    and not self.origin[s].get(sv, "").startswith("coarse:")
                ]
                parts = [
                    f"{n} ({sv}, coarse)"
                    for n, sv in src.labels.items()
                    if name.lower() in [p.lower() for p in self.coarse[s].get(n, ())]
                ]
                cells.append(", ".join(hit + parts) or "—")
            rows.append((v, name, cells))
        return rows

    def table_markdown(self) -> str:
        head = "| value | merged label | " + " | ".join(s.key for s in self.sources) + " |"
        lines = [head, "|" + "---|" * (2 + len(self.sources))]
        for v, name, cells in self.table():
            lines.append(f"| {v} | {name} | " + " | ".join(cells) + " |")
        if self.ignore is not None:
            lines.append(
                f"| {self.ignore} | ignore | "
                + " | ".join("ignore" if s.ignore is not None else "—" for s in self.sources)
                + " |"
            )
        return "\n".join(lines)

    def record(self) -> dict:
        """JSON-able mapping for the provenance file."""
        return {
            "labels": self.label_dict(),
            "sources": [
                {
                    "key": src.key,
                    "value_map": {
                        str(v): int(self.luts[s][v]) for v in range(len(self.luts[s])) if self.luts[s][v] >= 0
                    },
                    "origin": {str(v): o for v, o in sorted(self.origin[s].items())},
                    "coarse": {k: list(v) for k, v in self.coarse[s].items()},
                    "unannotated": [self.names[v] for v in self.unannotated[s]],
                }
                for s, src in enumerate(self.sources)
            ],
        }


def source_tag(key: str, position: int) -> str:
    """``D701`` for ``Dataset701_*``, else ``S<position>`` (from 1)."""
    m = _DATASET_RE.match(os.path.basename(str(key)))
    return f"D{m.group(1)}" if m else f"S{position}"


def case_ids(per_source: Sequence[Sequence[str]], keys: Sequence[str]) -> list:
    """Merged case ids: an id met in several sources gets ``<tag>__`` in each of them (see the module doc)."""
    seen: dict = {}
    for s, ids in enumerate(per_source):
        for c in ids:
            seen.setdefault(c, set()).add(s)
    tags = [source_tag(k, i + 1) for i, k in enumerate(keys)]
    if len(set(tags)) != len(tags):
        tags = [f"S{i + 1}" for i in range(len(keys))]
    out = [
        [f"{tags[s]}{CASE_SEPARATOR}{c}" if len(seen[c]) > 1 else c for c in ids] for s, ids in enumerate(per_source)
    ]
    flat = [c for ids in out for c in ids]
    if len(set(flat)) != len(flat):
        dup = sorted({c for c in flat if flat.count(c) > 1})[:5]
        raise ValueError(f"case ids {dup} are not unique after prefixing colliding ids; rename them in a source")
    return out


def read_label_map_config(path) -> dict:
    """Read and check the keys of a ``MAP.json`` (see the module doc); errors name the file and the key."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--labels: label map file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
    return check_label_map_config(data, path)


def _str_map(value, where: str) -> dict:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()
    ):
        raise ValueError(f"{where}: expected an object {{source label: merged label}} of names; got {value!r}")
    return {k.strip().lower(): v.strip() for k, v in value.items()}


def _coarse_map(value, where: str) -> dict:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, list) and len(v) >= 2 and all(isinstance(p, str) for p in v)
        for k, v in value.items()
    ):
        raise ValueError(f"{where}: expected an object {{source label: [two or more merged labels]}}; got {value!r}")
    return {k.strip().lower(): [p.strip() for p in v] for k, v in value.items()}


def check_label_map_config(data, where: str = "MAP.json") -> dict:
    """The checked ``MAP.json`` content: aliases/coarse keys lower-cased."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object; got {type(data).__name__}")
    unknown = sorted(set(data) - _MAP_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_MAP_KEYS)}")
    out: dict[str, Any] = {
        "aliases": _str_map(data.get("aliases", {}), f"{where}: 'aliases'"),
        "coarse": _coarse_map(data.get("coarse", {}), f"{where}: 'coarse'"),
        "sources": {},
        "order": None,
    }
    order = data.get("order")
    if order is not None:
        if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
            raise ValueError(f"{where}: 'order' must be a list of merged label names; got {order!r}")
        out["order"] = [n.strip() for n in order]
    sources = data.get("sources", {})
    if not isinstance(sources, Mapping):
        raise ValueError(f"{where}: 'sources' must be an object {{source: settings}}; got {sources!r}")
    for key, spec in sources.items():
        w = f"{where}: sources[{key!r}]"
        if not isinstance(spec, Mapping) or set(spec) - _SOURCE_KEYS:
            raise ValueError(f"{w}: expected an object with keys among {sorted(_SOURCE_KEYS)}; got {spec!r}")
        labels = spec.get("labels")
        if labels is not None and not isinstance(labels, Mapping):
            raise ValueError(f"{w}: 'labels' must be an object name → value; got {labels!r}")
        out["sources"][str(key)] = {
            "aliases": _str_map(spec.get("aliases", {}), f"{w}: 'aliases'"),
            "coarse": _coarse_map(spec.get("coarse", {}), f"{w}: 'coarse'"),
            "labels": labels,
        }
    return out


def source_settings(config: dict | None, key: str, position: int) -> dict:
    """The ``sources`` entry of ``config`` for a source (by folder name, id or position), or an empty one."""
    empty: dict[str, Any] = {"aliases": {}, "coarse": {}, "labels": None}
    if not config:
        return empty
    m = _DATASET_RE.match(os.path.basename(key))
    names = {os.path.basename(key), str(position)} | ({m.group(1), str(int(m.group(1)))} if m else set())
    hits = [k for k in config["sources"] if k in names]
    if len(hits) > 1:
        raise ValueError(f"MAP.json: sources {hits} all name {key}; keep one")
    return config["sources"][hits[0]] if hits else empty


def unmatched_source_keys(config: dict | None, keys: Sequence[str]) -> list:
    """``sources`` entries of ``config`` that name none of the sources (a typo)."""
    if not config:
        return []
    used = set()
    for i, key in enumerate(keys):
        m = _DATASET_RE.match(os.path.basename(key))
        used |= {os.path.basename(key), str(i + 1)} | ({m.group(1), str(int(m.group(1)))} if m else set())
    return sorted(k for k in config["sources"] if k not in used)


def _source_names(src: PoolSource, settings: dict, config: dict | None) -> tuple[dict, dict]:
    """(leaf: source value → merged name, coarse: source value → (source name, parts)) for one source."""
    aliases = {**(config or {}).get("aliases", {}), **settings["aliases"]}
    coarse_spec = {**(config or {}).get("coarse", {}), **settings["coarse"]}
    leaf: dict[int, str] = {}
    coarse: dict[int, tuple] = {}
    seen: dict[str, str] = {}
    for name, value in sorted(src.labels.items(), key=lambda kv: kv[1]):
        low = name.strip().lower()
        if low in seen:
            raise ValueError(
                f"{src.key}: dataset.json 'labels' has {seen[low]!r} and {name!r}, the same name up to "
                f"case; merged labels are matched case-insensitively"
            )
        seen[low] = name
        if value == 0:
            continue
        if low in coarse_spec:
            coarse[value] = (name, coarse_spec[low])
        else:
            leaf[value] = aliases.get(low, name.strip())
    return leaf, coarse


def _merged_order(first_seen: dict, order: list | None) -> list:
    if order is None:
        return list(first_seen.values())
    low = [n.lower() for n in order]
    if len(set(low)) != len(low) or set(low) != set(first_seen):
        missing = sorted(set(first_seen) - set(low))
        extra = sorted(set(low) - set(first_seen))
        raise ValueError(
            f"MAP.json: 'order' must list every merged label once (background excluded); missing "
            f"{missing}, unknown {extra}, or a repeat"
        )
    return [first_seen[n] for n in low]


def plan_labels(sources: Sequence[PoolSource], config: dict | None = None) -> LabelPlan:
    """Unite the sources' labels by name (see the module doc); ``config`` from :func:`check_label_map_config`.

    Raises:
        ValueError: two labels of one source equal up to case, a coarse part no source labels, a coarse part
            that the same source also labels, an ``order`` that is not a permutation of the merged labels.
    """
    keys = [s.key for s in sources]
    bad = unmatched_source_keys(config, keys)
    if bad:
        raise ValueError(f"MAP.json: sources {bad} match none of the sources ({', '.join(keys)})")
    per = [_source_names(src, source_settings(config, src.key, i + 1), config) for i, src in enumerate(sources)]
    first_seen: dict = {}
    for leaf, _ in per:
        for name in leaf.values():
            first_seen.setdefault(name.lower(), name)
    names = ["background"] + _merged_order(first_seen, config.get("order") if config else None)
    if "background" in first_seen:
        raise ValueError(f"a source label maps to the name 'background', which is label 0 ({keys})")
    value_of = {n.lower(): v for v, n in enumerate(names)}
    ignore = len(names) if any(s.ignore is not None for s in sources) else None
    luts, coarse_all, unannotated, origin = [], [], [], []
    for src, (leaf, coarse) in zip(sources, per):
        top = max([*src.labels.values(), src.ignore if src.ignore is not None else 0])
        lut = np.full(top + 1, -1, dtype=np.int64)
        lut[0] = 0
        org = {0: "background"}
        for v, name in leaf.items():
            lut[v] = value_of[name.lower()]
            org[v] = names[lut[v]]
        parts_of, missing = {}, set()
        for v, (name, parts) in coarse.items():
            for p in parts:
                if p.lower() not in value_of or p.lower() == "background":
                    raise ValueError(
                        f"{src.key}: coarse label {name!r} = {parts}: part {p!r} is no merged label "
                        f"(merged labels: {names[1:]})"
                    )
                if value_of[p.lower()] in lut[lut > 0]:
                    raise ValueError(
                        f"{src.key}: coarse label {name!r} has part {p!r}, which {src.key} also "
                        f"labels itself; a case cannot annotate a label and the union containing it"
                    )
            lut[v] = 0
            org[v] = "coarse: " + " | ".join(names[value_of[p.lower()]] for p in parts)
            parts_of[name] = [names[value_of[p.lower()]] for p in parts]
            missing |= {value_of[p.lower()] for p in parts}
        if src.ignore is not None:
            lut[src.ignore] = -1 if ignore is None else ignore  # ignore is set whenever a source has one
            org[src.ignore] = "ignore"
        luts.append(lut)
        coarse_all.append(parts_of)
        unannotated.append(sorted(missing))
        origin.append(org)
    return LabelPlan(names, list(sources), luts, coarse_all, unannotated, origin, ignore)
