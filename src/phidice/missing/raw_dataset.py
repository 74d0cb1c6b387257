"""An nnU-Net v2 raw dataset folder, read and checked without nnU-Net: dataset.json, its training cases and files.

Layout (nnU-Net v2): ``dataset.json``, ``imagesTr/<case>_<XXXX><file_ending>`` (one file per ``channel_names``
entry), ``labelsTr/<case><file_ending>``, and optionally ``annotated_labels.json`` (which labels each case
annotates). Errors name the dataset folder and the dataset.json field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phidice.missing.pooling import PoolSource

__all__ = ["ANNOTATION_FILE", "RawDataset", "read_raw_dataset", "resolve_raw_dataset", "sha256_file"]

ANNOTATION_FILE = "annotated_labels.json"


def sha256_file(path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks (memory does not grow with the file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class RawDataset:
    """A checked raw dataset: its folder, dataset.json, label names, cases and their files."""

    folder: Path
    dataset_json: dict
    labels: Mapping[str, int]
    ignore: int | None
    channel_names: Mapping[str, str]
    file_ending: str
    cases: tuple
    annotated: Mapping[str, tuple]  # case → annotated source values (cases of annotated_labels.json only)

    @property
    def key(self) -> str:
        return self.folder.name

    def images(self, case: str) -> list:
        return [
            self.folder / "imagesTr" / f"{case}_{int(k):04d}{self.file_ending}"
            for k in sorted(self.channel_names, key=int)
        ]

    def label(self, case: str) -> Path:
        return self.folder / "labelsTr" / f"{case}{self.file_ending}"

    def pool_source(self) -> PoolSource:
        return PoolSource(self.key, dict(self.labels), self.ignore)


def resolve_raw_dataset(dataset, raw_root: str | None) -> Path:
    """A raw dataset given as a folder, an id (``701``) or a name (``Dataset701_Liver``) under ``raw_root``."""
    text = str(dataset) if isinstance(dataset, int) and not isinstance(dataset, bool) else os.fspath(dataset)
    p = Path(text).expanduser()
    if p.is_dir():
        return p
    if not raw_root:
        raise FileNotFoundError(
            f"dataset {text!r}: not a folder, and nnUNet_raw is not set to look it up by id or name"
        )
    ident = text[7:10] if text.startswith("Dataset") else text
    if not ident.isdigit():
        raise FileNotFoundError(f"dataset {text!r}: not a folder, an integer id or a DatasetNNN_Name in {raw_root}")
    matches = sorted(d for d in Path(raw_root).glob(f"Dataset{int(ident):03d}_*") if d.is_dir())
    if text.startswith("Dataset"):
        matches = [d for d in matches if d.name == text]
    if len(matches) != 1:
        listed = ": " + ", ".join(m.name for m in matches) if matches else ""
        raise FileNotFoundError(
            f"dataset {text!r}: {len(matches)} matching folder(s) in nnUNet_raw={raw_root!r}{listed}"
        )
    return matches[0]


def _labels(dj: dict, override, where: str) -> tuple[dict, int | None]:
    labels = override if override is not None else dj.get("labels")
    field = "MAP.json 'labels'" if override is not None else "'labels'"
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f"{where}: {field} must be a non-empty object name → value; got {labels!r}")
    out, ignore = {}, None
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise ValueError(
                f"{where}: {field} entry {name!r} = {value!r} is a region (a list of labels): a "
                f"region-based dataset cannot be merged by name; name its base label values in "
                f'MAP.json: {{"sources": {{"<dataset>": {{"labels": {{"background": 0, ...}}}}}}}}'
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{where}: {field} entry {name!r} must be a non-negative integer; got {value!r}")
        if name == "ignore":
            ignore = value
        else:
            out[str(name)] = value
    if out.get("background") != 0:
        raise ValueError(f"{where}: {field} needs 'background': 0")
    values = sorted(out.values())
    if len(set(values)) != len(values):
        raise ValueError(f"{where}: {field} gives two names the same value ({values})")
    return out, ignore


def _cases(folder: Path, dj: dict, ending: str, channels: int, where: str) -> tuple:
    labels_dir, images_dir = folder / "labelsTr", folder / "imagesTr"
    if not labels_dir.is_dir() or not images_dir.is_dir():
        raise FileNotFoundError(f"{where}: needs imagesTr/ and labelsTr/ (an nnU-Net raw dataset)")
    cases = sorted(
        p.name[: -len(ending)]
        for p in labels_dir.iterdir()
        if p.is_file() and p.name.endswith(ending) and not p.name.startswith(".")
    )
    present = {p.name for p in images_dir.iterdir()}
    n = dj.get("numTraining")
    if isinstance(n, int) and not isinstance(n, bool) and n != len(cases):
        first = f"_0000{ending}"
        unlabelled = sorted({p[: -len(first)] for p in present if p.endswith(first)} - set(cases))
        missing = f"labelsTr/{unlabelled[0]}{ending} is missing (imagesTr/ holds its images); " if unlabelled else ""
        raise FileNotFoundError(
            f"{where}: {missing}'numTraining' is {n} but labelsTr/ holds {len(cases)} label file(s) ending in "
            f"{ending!r}"
        )
    if not cases:
        raise FileNotFoundError(f"{where}: labelsTr/ holds no label file ending in 'file_ending' {ending!r}")
    for case in cases:
        for k in range(channels):
            name = f"{case}_{k:04d}{ending}"
            if name not in present:
                raise FileNotFoundError(
                    f"{where}: imagesTr/{name} is missing ('channel_names' lists {channels} "
                    f"channel(s), case {case!r} is in labelsTr/)"
                )
    return tuple(cases)


def _annotations(folder: Path, labels: dict, cases: tuple, where: str) -> dict:
    path = folder / ANNOTATION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected an object case → annotated labels")
    out, known, values = {}, set(cases), set(labels.values())
    for case, items in data.items():
        if case not in known:
            raise ValueError(f"{path}: case {case!r} is not in {where} labelsTr/")
        if not isinstance(items, list):
            raise ValueError(f"{path}: case {case!r}: expected a list of labels; got {items!r}")
        vals = []
        for item in items:
            if isinstance(item, str) and item in labels:
                vals.append(labels[item])
            elif isinstance(item, int) and not isinstance(item, bool) and item in values:
                vals.append(item)
            else:
                raise ValueError(f"{path}: case {case!r}: {item!r} is no label of dataset.json")
        out[case] = tuple(sorted(set(vals)))
    return out


def read_raw_dataset(folder, labels_override: Mapping | None = None) -> RawDataset:
    """Read and check an nnU-Net raw dataset folder (no file content is read but the JSON files).

    Raises:
        FileNotFoundError: no dataset.json, no imagesTr/ or labelsTr/, a file missing (a channel image of a
            labelled case, or fewer label files than ``numTraining``).
        ValueError: dataset.json without ``channel_names``/``file_ending``, with a region, a ``dataset`` file
            list, or an invalid ``annotated_labels.json``.
    """
    folder = Path(folder)
    where = folder.name
    path = folder / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no dataset.json in {folder} (not an nnU-Net raw dataset folder)")
    try:
        dj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: dataset.json is not valid JSON ({err})") from err
    channels = dj.get("channel_names", dj.get("modality"))
    if not isinstance(channels, Mapping) or not channels or not all(str(k).isdigit() for k in channels):
        raise ValueError(
            f"{where}: dataset.json 'channel_names' must be an object {{'0': 'CT', ...}}; got {channels!r}"
        )
    ending = dj.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise ValueError(f"{where}: dataset.json 'file_ending' must be a string like '.nii.gz'; got {ending!r}")
    if "dataset" in dj:
        raise ValueError(
            f"{where}: dataset.json 'dataset' (explicit file lists) is not supported; use the imagesTr/labelsTr layout"
        )
    labels, ignore = _labels(dj, labels_override, where)
    channel_names = {str(k): str(v) for k, v in channels.items()}
    cases = _cases(folder, dj, ending, len(channel_names), where)
    return RawDataset(
        folder, dj, labels, ignore, channel_names, ending, cases, _annotations(folder, labels, cases, where)
    )
