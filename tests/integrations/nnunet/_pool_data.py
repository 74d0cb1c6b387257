"""Tiny synthetic nnU-Net raw datasets that label different, overlapping organs (for the merge tests)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np

AFFINE = np.array([[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -4.0], [0.0, 0.0, 3.0, 7.5], [0, 0, 0, 1]])


def write_source(
    root: Path,
    ident: int,
    name: str,
    labels: dict,
    *,
    cases=("case_000", "case_001"),
    channels=None,
    dtype=np.uint8,
    shape=(6, 5, 4),
    seed=0,
    ending=".nii.gz",
    extra=None,
) -> Path:
    """``root/DatasetNNN_name`` whose label maps hold every label of ``labels`` (one voxel row each)."""
    rng = np.random.default_rng(seed)
    channels = channels or {"0": "CT"}
    ds = root / f"Dataset{ident:03d}_{name}"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    values = sorted(v for v in labels.values() if v != 0 and not isinstance(v, list))
    for case in cases:
        lab = np.zeros(shape, dtype)
        for i, v in enumerate(values):
            lab[i % shape[0], :, int(rng.integers(0, shape[2]))] = v
        nib.save(nib.Nifti1Image(lab, AFFINE), str(ds / "labelsTr" / f"{case}{ending}"))
        for k in channels:
            img = rng.normal(size=shape).astype(np.float32)
            nib.save(nib.Nifti1Image(img, AFFINE), str(ds / "imagesTr" / f"{case}_{int(k):04d}{ending}"))
    dj = {
        "channel_names": channels,
        "labels": labels,
        "numTraining": len(cases),
        "file_ending": ending,
        **(extra or {}),
    }
    (ds / "dataset.json").write_text(json.dumps(dj, indent=2))
    return ds


def tree_hashes(folder: Path) -> dict:
    """sha256 of every file under ``folder`` (and the listing itself), to see that nothing changed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def two_sources(root: Path) -> tuple[Path, Path]:
    a = write_source(root, 701, "Liver", {"background": 0, "Liver": 1, "spleen": 2}, seed=1)
    b = write_source(
        root,
        702,
        "Kidney",
        {"background": 0, "liver": 1, "kidney_left": 2, "kidney_right": 3},
        cases=("case_001", "case_002", "case_003"),
        dtype=np.int16,
        seed=2,
    )
    return a, b
