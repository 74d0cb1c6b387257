"""phidice.io: the shared label-file reader."""

import numpy as np
import pytest
import SimpleITK as sitk

from phidice.io import iter_label_files, list_label_files, read_image, read_label_image


def test_nifti_and_mha_give_same_array_axes_and_spacing(tmp_path, nifti_writer):
    labels = np.arange(8 * 6 * 4).reshape(8, 6, 4) % 5
    nifti_writer(tmp_path / "a.nii.gz", labels, (2.0, 1.5, 3.0), dtype=np.int16)
    img = sitk.GetImageFromArray(labels.astype(np.int16).transpose(2, 1, 0))  # sitk arrays are (z, y, x)
    img.SetSpacing((2.0, 1.5, 3.0))
    sitk.WriteImage(img, str(tmp_path / "a.mha"))
    for name in ("a.nii.gz", "a.mha"):
        arr, spacing = read_label_image(tmp_path / name)
        assert np.issubdtype(arr.dtype, np.integer)
        np.testing.assert_array_equal(arr, labels)
        assert spacing == (2.0, 1.5, 3.0)


def test_float_file_with_whole_numbers_is_read_as_labels(tmp_path, nifti_writer):
    nifti_writer(tmp_path / "f.nii", np.array([[[0.0, 2.0], [1.0, 0.0]]]), dtype=np.float32)
    arr, _ = read_label_image(tmp_path / "f.nii")
    assert arr.dtype == np.int64 and arr.tolist() == [[[0, 2], [1, 0]]]
    raw, _ = read_image(tmp_path / "f.nii")
    assert raw.dtype == np.float32


def test_bad_files_give_clear_errors(tmp_path, nifti_writer):
    nifti_writer(tmp_path / "half.nii.gz", np.full((2, 2, 2), 0.5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"half\.nii\.gz.*non-integer labels.*0\.5"):
        read_label_image(tmp_path / "half.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image file .*broken\.nii\.gz"):
        read_label_image(tmp_path / "broken.nii.gz")
    (tmp_path / "broken.mha").write_bytes(b"nothing")
    with pytest.raises(ValueError, match=r"cannot read image file .*broken\.mha"):
        read_label_image(tmp_path / "broken.mha")
    with pytest.raises(FileNotFoundError, match="missing.nii"):
        read_label_image(tmp_path / "missing.nii")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_label_image(tmp_path / "x.png")


def test_iter_label_files_expands_dirs_globs_and_lists(tmp_path):
    for name in ("b.nii.gz", "a.nii", "c.mha"):  # listing looks at names only
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "readme.txt").write_text("")
    names = [p.name for p in iter_label_files(tmp_path)]
    assert names == ["a.nii", "b.nii.gz", "c.mha"]
    assert [p.name for p in list_label_files(str(tmp_path / "*.nii*"))] == ["a.nii", "b.nii.gz"]
    assert [p.name for p in list_label_files([tmp_path / "c.mha", str(tmp_path / "a.*")])] == ["c.mha", "a.nii"]
    with pytest.raises(ValueError, match="matches no label files"):
        list_label_files(str(tmp_path / "*.nrrd"))
    with pytest.raises(FileNotFoundError):
        list_label_files(tmp_path / "nope.nii")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no label files"):
        list_label_files(empty)
