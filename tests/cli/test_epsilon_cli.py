"""`phidice epsilon` on NIfTI files written here."""

import json

import nibabel as nib
import numpy as np
import pytest

from phidice.cli.main import main


def write(path, arr, spacing):
    nib.save(nib.Nifti1Image(np.asarray(arr, np.uint8), np.diag([*spacing, 1.0])), str(path))


@pytest.fixture
def labels(tmp_path):
    a = np.zeros((8, 8, 4), np.uint8)
    a[:2, :2, :2] = 1  # 8 voxels of class 1
    b = np.zeros((8, 8, 4), np.uint8)
    b[:4, :4, :] = 2  # 64 voxels of class 2, no class 1
    write(tmp_path / "a.nii.gz", a, (1.0, 1.0, 1.0))
    write(tmp_path / "b.nii.gz", b, (2.0, 2.0, 2.0))
    return tmp_path


def test_json_per_class(labels, capsys):
    rc = main(["epsilon", str(labels), "--json", "--workers", "1", "--no-progress", "--target-spacing", "2", "2", "2"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    # a: 1 mm voxels → 1/8 of a 2 mm voxel each; b is already at 2 mm
    assert out["epsilon"] == pytest.approx([(248 / 8 + 192) / 2, (8 / 8) / 2, 64 / 2])
    assert out["n_images"] == 2 and out["target_spacing"] == [2.0, 2.0, 2.0]


def test_table_positives_only_and_batch_phi(labels, capsys):
    assert main(["epsilon", str(labels / "*.nii.gz"), "--positives-only", "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 1 | 4 | 8 | 8 |" in out  # class 1: present once, mean 4 over both, 8 over positives
    assert (
        main(["epsilon", str(labels), "--phi", "BI", "--batch-size", "4", "--json", "--workers", "1", "--no-progress"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["epsilon"][2] == pytest.approx(4 * 32)


def test_errors_exit_2_with_message(labels, tmp_path, capsys):
    assert main(["epsilon", str(labels), "--num-classes", "2", "--workers", "1", "--no-progress"]) == 2
    assert "b.nii.gz" in capsys.readouterr().err
    (tmp_path / "c.nii.gz").write_bytes(b"junk")
    assert main(["epsilon", str(tmp_path / "c.nii.gz"), "--no-progress"]) == 2
    assert "cannot read image file" in capsys.readouterr().err
    assert main(["epsilon", str(tmp_path / "none.nii"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
