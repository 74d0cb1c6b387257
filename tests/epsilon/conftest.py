"""Small label datasets written to disk by the tests (NIfTI via nibabel, MHA via SimpleITK)."""

import nibabel as nib
import numpy as np
import pytest


def write_nifti(path, labels, spacing=(1.0, 1.0, 1.0), dtype=np.uint8):
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(np.asarray(labels).astype(dtype), affine), str(path))
    return path


def make_maps(seed=0, n=5, shape=(8, 8, 4), num_classes=4):
    """n label maps; map 1 lacks class 2 and map 3 is all background (an empty map for every class)."""
    rng = np.random.default_rng(seed)
    maps = [rng.integers(0, num_classes, size=shape) for _ in range(n)]
    maps[1][maps[1] == 2] = 0
    maps[3][...] = 0
    return maps


@pytest.fixture
def nifti_writer():
    """The helper ``write_nifti(path, labels, spacing=(1, 1, 1), dtype=np.uint8)``."""
    return write_nifti


@pytest.fixture
def nifti_dataset(tmp_path):
    """(directory, maps, spacings): 5 NIfTI maps with different voxel sizes."""
    maps = make_maps()
    spacings = [(1.0, 1.0, 2.0), (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), (0.5, 1.0, 2.0), (1.5, 1.5, 1.5)]
    d = tmp_path / "labels"
    d.mkdir()
    for i, (m, sp) in enumerate(zip(maps, spacings)):
        write_nifti(d / f"case{i:02d}.nii.gz", m, sp)
    (d / "notes.txt").write_text("not a label file")
    return d, maps, spacings
