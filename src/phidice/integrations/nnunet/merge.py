"""``phidice nnunet merge``: several nnU-Net v2 raw datasets pooled into one, labels united by name.

The merged dataset ``$nnUNet_raw/DatasetNNN_NAME`` is a plain nnU-Net v2 raw dataset (``nnUNetv2_plan_and_
preprocess`` takes it as it is) plus

* ``annotated_labels.json`` — for every merged case, the merged labels its source annotates (the file the
  missing-label trainers ``nnUNetTrainerPhiDice_Leaf`` / ``_Marginal`` read);
* ``merge_provenance.json`` — per merged case: source dataset, source case id, every source file with its
  sha256, and per source the value map, so any merged file traces back to its origin.

Labels are united as :mod:`phidice.missing.pooling` describes (by name, case-insensitively; aliases, coarse
labels, dataset-specific labels from ``MAP.json``). Label maps are rewritten with the merged values (same
header: spacing, origin, direction, dtype); a source whose values do not change has its maps linked or copied
as they are; images are hard-linked where the file system allows, else copied, never changed.

Everything that can be checked from the JSON files and the folder listings is checked before a file is
written; label values are checked while each map is rewritten. Everything is written into a hidden temporary
folder beside the target and renamed at the end: a refusal, an error or Ctrl-C leaves no ``DatasetNNN_*``.
Sources are only read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import phidice
from phidice.integrations.nnunet.annotations import ANNOTATION_FILE, parse_annotations
from phidice.integrations.nnunet.task import NNUNetTask
from phidice.missing.pooling import (
    LabelPlan,
    case_ids,
    check_label_map_config,
    plan_labels,
    read_label_map_config,
    source_settings,
)
from phidice.missing.raw_dataset import RawDataset, read_raw_dataset, resolve_raw_dataset, sha256_file
from phidice.progress import progress as progress_bar

__all__ = ["IMAGE_MODES", "PROVENANCE_FILE", "MergeSummary", "merge_datasets"]

PROVENANCE_FILE = "merge_provenance.json"
IMAGE_MODES = ("link", "copy")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass
class MergeSummary:
    """What :func:`merge_datasets` did (or, with ``dry_run``, would do)."""

    target: Path
    plan: LabelPlan
    sources: list
    cases: list  # per source: number of cases
    renamed: int = 0
    dry_run: bool = False
    seconds: float = 0.0
    relabelled: int = 0  # label maps rewritten (the others were linked/copied unchanged)
    files: list = field(default_factory=list)

    @property
    def num_cases(self) -> int:
        return sum(self.cases)

    def text(self) -> str:
        head = "would write" if self.dry_run else "wrote"
        lines = [
            f"{head} {self.target} ({self.num_cases} cases: "
            + ", ".join(f"{n} from {s}" for n, s in zip(self.cases, self.sources))
            + f"; {self.renamed} case id(s) prefixed)",
            "",
            self.plan.table_markdown(),
        ]
        for s, src in enumerate(self.sources):
            if self.plan.unannotated[s]:
                lines.append(
                    f"\n{src}: coarse label(s) {sorted(self.plan.coarse[s])} — parts "
                    f"{[self.plan.names[v] for v in self.plan.unannotated[s]]} not annotated in its cases"
                )
        if not self.dry_run:
            lines.append(
                f"\n{self.relabelled} label map(s) rewritten, {self.seconds:.1f} s; {ANNOTATION_FILE} and "
                f"{PROVENANCE_FILE} written"
            )
        return "\n".join(lines)


def _checked_sources(sources, raw_root, config) -> list:
    """Read every source and check they can be pooled: same channels, file ending and reader."""
    if not sources:
        raise ValueError("merge needs at least one source dataset")
    folders = [resolve_raw_dataset(s, raw_root) for s in sources]
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"a source dataset is given twice: {[str(f) for f in folders]}")
    out = []
    for i, folder in enumerate(folders):
        override = source_settings(config, folder.name, i + 1)["labels"]
        out.append(read_raw_dataset(folder, override))
    first = out[0]
    for src in out[1:]:
        if src.channel_names != first.channel_names:
            raise ValueError(
                f"{src.key}: dataset.json 'channel_names' {src.channel_names} differ from {first.key}'s "
                f"{first.channel_names}; only datasets of the same input channels can be pooled"
            )
        if src.file_ending != first.file_ending:
            raise ValueError(
                f"{src.key}: dataset.json 'file_ending' {src.file_ending!r} differs from {first.key}'s "
                f"{first.file_ending!r}; convert one of them first"
            )
        rw = "overwrite_image_reader_writer"
        if src.dataset_json.get(rw) != first.dataset_json.get(rw):
            raise ValueError(
                f"{src.key}: dataset.json {rw!r} {src.dataset_json.get(rw)!r} differs from "
                f"{first.key}'s {first.dataset_json.get(rw)!r}"
            )
    return out


def _target(raw_root, dataset_id: int, name: str) -> Path:
    if not raw_root:
        raise ValueError(
            "nnUNet_raw is not set: the merged dataset goes to $nnUNet_raw/DatasetNNN_NAME (export "
            "nnUNet_raw=/path/to/nnUNet_raw)"
        )
    root = Path(raw_root)
    if not root.is_dir():
        raise FileNotFoundError(f"nnUNet_raw={raw_root!r} is not a folder")
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ValueError(f"--id must be an integer 1..999; got {dataset_id!r}")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"--name {name!r}: use letters, digits, '_' and '-' (nnU-Net's DatasetNNN_NAME)")
    taken = sorted(d.name for d in root.glob(f"Dataset{dataset_id:03d}_*"))
    if taken:
        raise ValueError(
            f"--id {dataset_id}: dataset id {dataset_id:03d} is taken in nnUNet_raw ({', '.join(taken)}); "
            f"nnU-Net finds datasets by id, choose another"
        )
    return root / f"Dataset{dataset_id:03d}_{name}"


# ------------------------------------------------------------------------------------------------ file IO
def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _read_errors() -> tuple:
    """What a reader raises for a truncated or corrupt file: gzip/zlib, end of file, nibabel, SimpleITK."""
    errors: tuple = (OSError, EOFError, ValueError, RuntimeError, zlib.error)
    try:
        from nibabel.filebasedimages import ImageFileError
    except ImportError:  # nibabel absent: SimpleITK files only
        return errors
    return (*errors, ImageFileError)


def _load_label(path: Path, where: str):
    """(array, save(new_array, dst), (shape, spacing)) keeping the file's header: spacing, origin, direction,
    dtype. A file that cannot be read raises a ValueError that names it (``where``)."""
    try:
        return _read_label(path)
    except _read_errors() as err:
        if isinstance(err, ValueError) and "a label map must be" in str(err):
            raise
        raise ValueError(
            f"{where} cannot be read as a label map ({_reason(err, path)}); expected a complete "
            f"{_ending(path)} file (truncated or corrupt?)"
        ) from err


def _ending(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix


def _reason(err: BaseException, path: Path) -> str:
    """The reader's message on one line, the file's folder left out (the message names it already)."""
    text = " ".join(str(err).replace(str(path), path.name).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _read_label(path: Path):
    if _is_nifti(path):
        import nibabel as nib

        img = nib.load(str(path))
        data = np.asarray(img.dataobj)

        def save_nifti(new, dst):
            out = type(img)(new, img.affine, img.header)
            out.set_data_dtype(img.get_data_dtype())
            nib.save(out, str(dst))

        return data, save_nifti, _nifti_grid(img)
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    if img.GetNumberOfComponentsPerPixel() > 1:
        raise ValueError(f"{path}: a label map must be a scalar image; got a vector image")

    def save(new, dst):
        out = sitk.GetImageFromArray(new)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(dst), True)

    return sitk.GetArrayFromImage(img), save, (tuple(img.GetSize()), tuple(img.GetSpacing()))


def _nifti_grid(img) -> tuple:
    shape = tuple(int(n) for n in img.shape[:3])
    return shape, tuple(float(z) for z in img.header.get_zooms()[: len(shape)])


def _image_grid(path: Path, where: str) -> tuple:
    """(shape, spacing) of an image from its header (its voxels are not read)."""
    try:
        if _is_nifti(path):
            import nibabel as nib

            return _nifti_grid(nib.load(str(path)))
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return tuple(reader.GetSize()), tuple(reader.GetSpacing())
    except _read_errors() as err:
        raise ValueError(
            f"{where} cannot be read as an image ({_reason(err, path)}); expected a {_ending(path)} file"
        ) from err


def _check_grid(job: _Job, label_grid: tuple) -> None:
    """Every channel image of a case lies on its label map's voxel grid: the same shape and spacing (nnU-Net's
    dataset check refuses the case otherwise)."""
    shape, spacing = label_grid
    for image in job.src.images(job.case):
        img_shape, img_spacing = _image_grid(image, f"{job.src.key}: imagesTr/{image.name}")
        same_spacing = len(img_spacing) == len(spacing) and np.allclose(img_spacing, spacing, rtol=1e-5, atol=0)
        if img_shape != shape or not same_spacing:
            raise ValueError(
                f"{job.src.key}: imagesTr/{image.name} has shape {img_shape} and spacing {_fmt(img_spacing)} but "
                f"labelsTr/{job.case}{job.src.file_ending} has shape {shape} and spacing {_fmt(spacing)}; an image "
                f"and its label map must share the voxel grid"
            )


def _fmt(spacing) -> str:
    return "(" + ", ".join(f"{v:g}" for v in spacing) + ")"


def _place(src: Path, dst: Path, mode: str) -> None:
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copy2(src, dst)


@dataclass(frozen=True)
class _Job:
    s: int
    src: RawDataset
    case: str
    merged: str
    annotated: list


def _merge_case(job: _Job, plan: LabelPlan, tmp: Path, mode: str, scan_only: bool) -> dict:
    """Write one merged case into ``tmp`` (or, ``scan_only``, only check its label values); its provenance."""
    src, ending = job.src, job.src.file_ending
    label = src.label(job.case)
    rel = f"labelsTr/{job.case}{ending}"
    # every map is read: its values are checked even when they keep them
    data, save, grid = _load_label(label, f"{src.key}: {rel}")
    _check_grid(job, grid)
    new = plan.remap(job.s, data, where=rel)
    if not scan_only:
        if plan.is_identity(job.s):
            _place(label, tmp / "labelsTr" / f"{job.merged}{ending}", mode)  # unchanged: the file as it is
        else:
            save(new, tmp / "labelsTr" / f"{job.merged}{ending}")
    if scan_only:
        return {}
    files = {f"labelsTr/{job.merged}{ending}": {"source": rel, "sha256": sha256_file(label)}}
    for k, image in enumerate(src.images(job.case)):
        name = f"{job.merged}_{k:04d}{ending}"
        _place(image, tmp / "imagesTr" / name, mode)
        files[f"imagesTr/{name}"] = {"source": f"imagesTr/{image.name}", "sha256": sha256_file(image)}
    return {"source": src.key, "source_index": job.s, "case": job.case, "annotated": job.annotated, "files": files}


def _jobs(raws: Sequence[RawDataset], plan: LabelPlan) -> tuple[list, int]:
    ids = case_ids([r.cases for r in raws], [r.key for r in raws])
    jobs, renamed = [], 0
    for s, (raw, merged_ids) in enumerate(zip(raws, ids)):
        for case, merged in zip(raw.cases, merged_ids):
            annotated = plan.annotated(s, raw.annotated.get(case))
            jobs.append(_Job(s, raw, case, merged, [plan.names[v] for v in annotated]))
            renamed += merged != case
    return jobs, renamed


def _run_jobs(jobs, plan, tmp, mode, scan_only, workers, progress) -> list:
    """Run the cases on ``workers`` threads (file I/O and zlib release the GIL); results in job order."""
    results: list = [None] * len(jobs)
    bar = progress_bar(total=len(jobs), desc="checking" if scan_only else "merging", unit="case", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(_merge_case, job, plan, tmp, mode, scan_only): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return results


def _dataset_json(raws, plan: LabelPlan, target: Path, n: int) -> dict:
    first = raws[0].dataset_json
    dj = {
        "channel_names": dict(raws[0].channel_names),
        "labels": plan.label_dict(),
        "numTraining": n,
        "file_ending": raws[0].file_ending,
        "name": target.name,
        "description": "pooled by phidice nnunet merge from " + ", ".join(r.key for r in raws),
    }
    if "overwrite_image_reader_writer" in first:
        dj["overwrite_image_reader_writer"] = first["overwrite_image_reader_writer"]
    return dj


def _write_metadata(tmp: Path, raws, plan: LabelPlan, jobs, results, target: Path, mode: str) -> None:
    dj = _dataset_json(raws, plan, target, len(jobs))
    annotated = {job.merged: job.annotated for job in jobs}
    task = NNUNetTask.from_label_dict(dj["labels"], where=f"{target.name}/dataset.json")
    parse_annotations(annotated, task, path=ANNOTATION_FILE, case_ids=annotated)  # what the trainers will read
    provenance = {
        "phidice_version": phidice.__version__,
        "target": target.name,
        "images": mode,
        "case_separator": "__",
        "mapping": plan.record(),
        "sources": [
            {
                "key": r.key,
                "path": str(r.folder.resolve()),
                "dataset_json_sha256": sha256_file(r.folder / "dataset.json"),
            }
            for r in raws
        ],
        "cases": {job.merged: res for job, res in zip(jobs, results)},
    }
    for name, content in (("dataset.json", dj), (ANNOTATION_FILE, annotated), (PROVENANCE_FILE, provenance)):
        (tmp / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def merge_datasets(
    sources: Sequence,
    *,
    dataset_id: int,
    name: str,
    labels=None,
    raw_root=None,
    dry_run: bool = False,
    jobs: int = 1,
    images: str = "link",
    progress: bool = True,
) -> MergeSummary:
    """Pool nnU-Net v2 raw datasets into ``<raw_root>/Dataset<dataset_id>_<name>`` (see the module doc).

    Args:
        sources: dataset folders, ids (``701``) or names (``Dataset701_Liver``) under ``raw_root``.
        dataset_id, name: the merged dataset's id (1..999, not taken) and name.
        labels: a ``MAP.json`` path or its decoded content (aliases, coarse, per-source labels, order).
        raw_root: nnU-Net's raw folder (default ``$nnUNet_raw``).
        dry_run: check everything (label values included) and return the summary; write nothing.
        jobs: worker threads.
        images: ``"link"`` (hard links where possible, else copies) or ``"copy"``.
        progress: a progress bar over cases.

    Returns:
        A :class:`MergeSummary` (``.text()`` holds the label table).

    Raises:
        ValueError / FileNotFoundError: with a one-line message naming the dataset and the field.
    """
    start = time.perf_counter()
    raw_root = os.environ.get("nnUNet_raw") if raw_root is None else os.fspath(raw_root)
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}; got {images!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"-j/--jobs must be a positive integer; got {jobs!r}")
    target = _target(raw_root, dataset_id, name)
    config = None
    if labels is not None:
        config = (
            read_label_map_config(labels) if isinstance(labels, (str, os.PathLike)) else check_label_map_config(labels)
        )
    raws = _checked_sources(sources, raw_root, config)
    plan = plan_labels([r.pool_source() for r in raws], config)
    job_list, renamed = _jobs(raws, plan)
    summary = MergeSummary(target, plan, [r.key for r in raws], [len(r.cases) for r in raws], renamed, dry_run)
    if dry_run:
        _run_jobs(job_list, plan, target, images, True, jobs, progress)
        return summary
    tmp = target.parent / f".phidice-merge-{target.name}-{os.getpid()}"
    try:
        (tmp / "imagesTr").mkdir(parents=True)
        (tmp / "labelsTr").mkdir()
        results = _run_jobs(job_list, plan, tmp, images, False, jobs, progress)
        _write_metadata(tmp, raws, plan, job_list, results, target, images)
        if any(target.parent.glob(f"Dataset{dataset_id:03d}_*")):
            raise ValueError(f"--id {dataset_id}: a Dataset{dataset_id:03d}_* appeared in nnUNet_raw while merging")
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    summary.relabelled = sum(not plan.is_identity(j.s) for j in job_list)
    summary.seconds = time.perf_counter() - start
    summary.files = [target / "dataset.json", target / ANNOTATION_FILE, target / PROVENANCE_FILE]
    return summary
