"""The paper's two derived datasets from an nnU-Net raw dataset and a ``case,group`` CSV (``make-partial``).

* **empty-label set-up**: in the cases of the chosen group, the chosen labels are replaced by background —
  the network sees empty maps (the paper's BRATS LGG cases under partial labelling);
* **missing-label set-up**: the same label maps plus ``annotated_labels.json`` saying which labels those cases
  annotate, for the leaf and marginal trainers.

Both are new nnU-Net raw datasets (``DatasetXXX_Name``) next to the source. The source is only read: images
are copied (or hard/symbolic links made), label maps are rewritten into the new folders, each dataset is
assembled in a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

import phidice
from phidice.integrations.nnunet.annotations import ANNOTATION_FILE, parse_annotations
from phidice.integrations.nnunet.task import NNUNetTask
from phidice.metrics.evaluate import read_groups
from phidice.progress import progress as progress_bar

PROVENANCE_FILE = "phidice_partial.json"
GROUPS_FILE = "groups.csv"
IMAGE_MODES = ("copy", "hardlink", "symlink")
_DATASET_RE = re.compile(r"^Dataset(\d{3})_(.+)$")


@dataclass
class PartialResult:
    empty_dir: Path
    missing_dir: Path
    changed_cases: list = field(default_factory=list)
    relabelled_voxels: int = 0
    cases: int = 0

    def summary(self) -> str:
        return (
            f"{self.cases} cases, {len(self.changed_cases)} with labels replaced by background "
            f"({self.relabelled_voxels} voxels)\n  empty-label set-up:   {self.empty_dir}\n"
            f"  missing-label set-up: {self.missing_dir} (with {ANNOTATION_FILE})"
        )


def resolve_dataset(dataset: str, env_var: str) -> Path:
    """A dataset folder given as a path, or as an id / DatasetXXX_Name under ``$env_var``."""
    p = Path(dataset).expanduser()
    if p.is_dir():
        return p
    root = os.environ.get(env_var)
    if not root:
        raise FileNotFoundError(
            f"dataset folder {dataset!r} not found (and {env_var} is not set to look it up by id or name)"
        )
    ident = dataset[7:10] if dataset.startswith("Dataset") else dataset
    if not ident.isdigit():
        raise FileNotFoundError(f"dataset {dataset!r}: not a folder, an integer id or a DatasetXXX_Name")
    matches = sorted(d for d in Path(root).glob(f"Dataset{int(ident):03d}_*") if d.is_dir())
    if dataset.startswith("Dataset"):
        matches = [d for d in matches if d.name == dataset] or matches
    if len(matches) != 1:
        raise FileNotFoundError(
            f"dataset {dataset!r}: {len(matches)} matching folder(s) in {env_var}={root!r}"
            f"{': ' + ', '.join(m.name for m in matches) if matches else ''}"
        )
    return matches[0]


def read_dataset_json(folder: Path) -> dict:
    path = folder / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an nnU-Net dataset folder: no dataset.json")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err


def resolve_labels(items: Iterable | None, task: NNUNetTask, where: str) -> list[int]:
    """Label values from integers or dataset.json names; None = every foreground label."""
    if items is None:
        return [v for v in task.labels if v != 0]
    names, out = task.names(), set()
    for item in items:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            v = int(text)
            if v == 0:
                raise ValueError(f"{where}: label 0 is the background; it cannot be removed")
            if v not in task.labels:
                raise ValueError(f"{where}: label {v} is not in dataset.json (labels {list(task.labels)})")
            out.add(v)
        elif text in names:
            out.update(v for v in names[text] if v != 0)
        else:
            raise ValueError(
                f"{where}: {text!r} is neither a label value nor a label name of dataset.json "
                f"({', '.join(repr(n) for n in names)})"
            )
    if not out:
        raise ValueError(f"{where}: no label to remove")
    return sorted(out)


# ------------------------------------------------------------------------------------------------ label IO
def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def remove_labels(src: Path, dst: Path, labels: Sequence[int]) -> int:
    """Write ``src`` to ``dst`` with ``labels`` replaced by 0 (same header, dtype, format); voxels changed."""
    if _is_nifti(src):
        import nibabel as nib

        img = nib.load(str(src))
        data = np.asanyarray(img.dataobj)
        hit = np.isin(data, labels)
        new = np.where(hit, np.zeros((), data.dtype), data)
        out = type(img)(new, img.affine, img.header)
        out.set_data_dtype(img.get_data_dtype())
        nib.save(out, str(dst))
        return int(hit.sum())
    import SimpleITK as sitk

    img = sitk.ReadImage(str(src))
    data = sitk.GetArrayFromImage(img)
    hit = np.isin(data, labels)
    out = sitk.GetImageFromArray(
        np.where(hit, np.zeros((), data.dtype), data), isVector=img.GetNumberOfComponentsPerPixel() > 1
    )
    out.CopyInformation(img)
    sitk.WriteImage(out, str(dst), True)
    return int(hit.sum())


def _place(src: Path, dst: Path, mode: str) -> None:
    if mode == "copy":
        shutil.copy2(src, dst)
    elif mode == "hardlink":
        os.link(src, dst)
    else:
        os.symlink(os.path.abspath(src), dst)


# ------------------------------------------------------------------------------------------------ main
def _dataset_name(ident: int, name: str, what: str) -> str:
    if isinstance(ident, bool) or not isinstance(ident, int) or not 1 <= ident <= 999:
        raise ValueError(f"{what} id must be an integer 1..999; got {ident!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"{what} name {name!r}: use letters, digits, '_' and '-'")
    return f"Dataset{ident:03d}_{name}"


class _Source(NamedTuple):
    """A checked raw dataset and what make-partial derives from it."""

    dataset: Path
    dataset_json: dict
    task: NNUNetTask
    ending: str
    remove: list
    cases: list
    chosen: list
    names: dict
    out_root: Path


def _check_source(
    dataset, groups_csv, group, labels, images, *, empty_id, missing_id, empty_name, missing_name, out_root
) -> _Source:
    """Everything make-partial needs from the user's raw dataset and groups, checked before a file is written."""
    src = Path(dataset)
    dj = read_dataset_json(src)
    where = str(src / "dataset.json")
    task = NNUNetTask.from_label_dict(dj.get("labels"), where=where)
    ending = dj.get("file_ending")
    if not isinstance(ending, str) or not ending:
        raise ValueError(f"{where}: no 'file_ending'")
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}; got {images!r}")
    remove = resolve_labels(labels, task, where)
    labels_dir, images_dir = src / "labelsTr", src / "imagesTr"
    if not labels_dir.is_dir() or not images_dir.is_dir():
        raise FileNotFoundError(f"{src} needs imagesTr/ and labelsTr/ (an nnU-Net raw dataset)")
    cases = sorted(
        p.name[: -len(ending)]
        for p in labels_dir.iterdir()
        if p.is_file() and p.name.endswith(ending) and not p.name.startswith(".")
    )
    if not cases:
        raise ValueError(f"{labels_dir} holds no label files ending in {ending!r}")
    chosen = _chosen_cases(cases, read_groups(groups_csv), groups_csv, group)
    m = _DATASET_RE.match(src.name)
    base = m.group(2) if m else src.name
    tag = re.sub(r"[^A-Za-z0-9]", "", group) or "group"
    out_root = Path(out_root) if out_root is not None else src.parent
    names = {
        "empty": _dataset_name(empty_id, empty_name or f"{base}_empty{tag}", "empty-label dataset"),
        "missing": _dataset_name(missing_id, missing_name or f"{base}_missing{tag}", "missing-label dataset"),
    }
    if len({empty_id, missing_id, int(m.group(1)) if m else -1}) != 3:
        raise ValueError(
            f"the dataset ids must differ from each other and from the source's; got "
            f"{empty_id}, {missing_id} for {src.name}"
        )
    out_root.mkdir(parents=True, exist_ok=True)
    for key, ident in (("empty", empty_id), ("missing", missing_id)):
        taken = [d.name for d in out_root.glob(f"Dataset{ident:03d}_*")]
        if taken:
            raise ValueError(
                f"dataset id {ident:03d} is taken in {out_root}: {', '.join(taken)} (nnU-Net finds "
                f"datasets by id; choose another --{key}-id)"
            )
    if out_root.resolve() == src.resolve() or src.resolve() in out_root.resolve().parents:
        raise ValueError(f"--out {out_root} lies inside the source dataset {src}")
    return _Source(src, dj, task, ending, remove, cases, chosen, names, out_root)


def _chosen_cases(cases, groups: dict, groups_csv, group: str) -> list:
    ungrouped = [c for c in cases if c not in groups]
    if ungrouped:
        raise ValueError(
            f"{groups_csv}: {len(ungrouped)} training case(s) have no group: "
            f"{', '.join(ungrouped[:8])}{' ...' if len(ungrouped) > 8 else ''}"
        )
    available = sorted(set(groups.values()))
    if group not in available:
        raise ValueError(f"{groups_csv}: no case in group {group!r} (groups: {', '.join(available)})")
    return [c for c in cases if groups[c] == group]


def make_partial(
    dataset,
    groups_csv,
    group: str,
    labels: Iterable | None = None,
    *,
    empty_id: int,
    missing_id: int,
    empty_name: str | None = None,
    missing_name: str | None = None,
    out_root=None,
    images: str = "copy",
    progress: bool = True,
) -> PartialResult:
    """Write the empty-label and missing-label datasets derived from the raw dataset folder ``dataset``.

    Both are written to temporary folders and renamed into place at the end: an interrupted run leaves nothing.
    """
    s = _check_source(
        dataset,
        groups_csv,
        group,
        labels,
        images,
        empty_id=empty_id,
        missing_id=missing_id,
        empty_name=empty_name,
        missing_name=missing_name,
        out_root=out_root,
    )
    src, dj, task, ending, remove, cases, chosen, names, out_root = s
    labels_dir, images_dir = src / "labelsTr", src / "imagesTr"
    tmp = {k: out_root / f".phidice-tmp-{n}-{os.getpid()}" for k, n in names.items()}
    result = PartialResult(out_root / names["empty"], out_root / names["missing"], cases=len(cases))
    try:
        for d in tmp.values():
            (d / "imagesTr").mkdir(parents=True)
            (d / "labelsTr").mkdir()
        files = sorted(p for p in images_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        for p in progress_bar(files, desc="images", unit="file", disable=not progress):
            for d in tmp.values():
                _place(p, d / "imagesTr" / p.name, images)
        _write_labels(cases, set(chosen), labels_dir, ending, tmp, remove, result, progress)
        keep = sorted(v for v in task.labels if v != 0 and v not in remove)
        annotated = {case: keep for case in chosen}
        parse_annotations(annotated, task, path=ANNOTATION_FILE, case_ids=cases)  # what the trainers will read
        _write_metadata(tmp, dj, src, groups_csv, group, remove, result, images)
        (tmp["missing"] / ANNOTATION_FILE).write_text(json.dumps(annotated, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp["empty"], result.empty_dir)
        os.replace(tmp["missing"], result.missing_dir)
    finally:
        for d in tmp.values():
            if d.exists():
                shutil.rmtree(d)
    return result


def _write_labels(cases, chosen_set, labels_dir, ending, tmp, remove, result, progress) -> None:
    """Each case's label file into both set-ups: the chosen cases with ``remove`` set to background."""
    for case in progress_bar(cases, desc="labels", unit="case", disable=not progress):
        name = case + ending
        first = tmp["empty"] / "labelsTr" / name
        if case in chosen_set:
            n = remove_labels(labels_dir / name, first, remove)
            result.relabelled_voxels += n
            result.changed_cases.append(case)
        else:
            shutil.copy2(labels_dir / name, first)
        shutil.copy2(first, tmp["missing"] / "labelsTr" / name)
        sidecar = labels_dir / f"{case}.json"  # e.g. the spacing file of nnU-Net's TIFF reader
        if sidecar.is_file() and ending != ".json":
            for d in tmp.values():
                shutil.copy2(sidecar, d / "labelsTr" / sidecar.name)


def _write_metadata(tmp, dj, src, groups_csv, group, remove, result, images) -> None:
    """dataset.json, the groups CSV and the provenance record of each set-up."""
    for key, d in tmp.items():
        (d / "dataset.json").write_text(json.dumps(dj, indent=4) + "\n", encoding="utf-8")
        shutil.copy2(groups_csv, d / GROUPS_FILE)
        prov = {
            "phidice_version": phidice.__version__,
            "set_up": key,
            "source": str(src.resolve()),
            "groups_csv": str(Path(groups_csv).resolve()),
            "group": group,
            "labels_removed": remove,
            "cases_changed": result.changed_cases,
            "images": images,
            "note": (
                "labels of these cases replaced by background: the network is told they are empty"
                if key == "empty"
                else f"labels of these cases replaced by background and listed in {ANNOTATION_FILE} as not annotated"
            ),
        }
        (d / PROVENANCE_FILE).write_text(json.dumps(prov, indent=2) + "\n", encoding="utf-8")
