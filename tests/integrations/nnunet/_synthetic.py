"""A tiny synthetic nnU-Net raw dataset (NIfTI), 2D (stored as one-slice volumes) or 3D.

Label 1 ("blob") is a disc/ball, label 2 ("spot") a small square/cube, both brighter than the background;
cases alternate between groups "A" and "B". Held-out cases go to imagesTs / a separate reference folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np

LABELS = {"background": 0, "blob": 1, "spot": 2}


def _case(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    grid = np.indices(shape).astype(np.float32)
    center = np.array([rng.uniform(0.35, 0.65) * s for s in shape], dtype=np.float32)
    radius = rng.uniform(0.18, 0.28) * min(shape)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    lab = np.zeros(shape, np.uint8)
    lab[dist <= radius] = 1
    side = max(2, min(shape) // 6)
    corner = [int(rng.integers(1, s - side - 1)) for s in shape]
    box = tuple(slice(c, c + side) for c in corner)
    lab[box] = 2
    img = rng.normal(0.0, 0.3, shape).astype(np.float32)
    img[lab == 1] += 2.0
    img[lab == 2] += 4.0
    return img, lab


def _save(array: np.ndarray, path: Path, two_d: bool) -> None:
    data = array[..., None] if two_d else array  # 2D: a volume with one slice
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def write_dataset(
    root: Path,
    dataset_id: int,
    name: str,
    *,
    two_d: bool,
    n_train: int = 8,
    n_test: int = 2,
    size: int = 32,
    seed: int = 0,
) -> dict:
    """Write ``root/DatasetXXX_name`` (imagesTr, labelsTr, imagesTs, dataset.json) plus ``labelsTs`` and
    ``groups.csv`` beside it; returns their paths."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if two_d else (size, size, size)
    ds = root / f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (ds / sub).mkdir(parents=True, exist_ok=True)
    labels_ts = root / f"{name}_labelsTs"
    labels_ts.mkdir(parents=True, exist_ok=True)
    groups = {}
    for i in range(n_train + n_test):
        case = f"case_{i:03d}"
        img, lab = _case(rng, shape)
        train = i < n_train
        _save(img, ds / ("imagesTr" if train else "imagesTs") / f"{case}_0000.nii.gz", two_d)
        _save(lab, (ds / "labelsTr" if train else labels_ts) / f"{case}.nii.gz", two_d)
        groups[case] = "A" if i % 2 == 0 else "B"
    dataset_json = {
        "channel_names": {"0": "synthetic"},
        "labels": LABELS,
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": name,
    }
    (ds / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    groups_csv = root / f"{name}_groups.csv"
    with open(groups_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "group"])
        w.writerows(sorted(groups.items()))
    return {
        "dataset": ds,
        "labels_ts": labels_ts,
        "images_ts": ds / "imagesTs",
        "groups": groups_csv,
        "groups_map": groups,
    }
