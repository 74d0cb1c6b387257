"""phidice.estimate_epsilon against numpy truth on NIfTI files written here."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import phidice
from phidice.epsilon import epsilon_stats


def truth(maps, C, scales=None, positives_only=False, ignore_index=None, B=1):
    """E[Σy] per class by explicit loops: the mean volume (over positive images when asked)."""
    scales = scales or [1.0] * len(maps)
    vol = np.array(
        [[float(((m == c) & (m != ignore_index)).sum()) * s for c in range(C)] for m, s in zip(maps, scales)]
    )
    if not positives_only:
        return B * vol.mean(0)
    present = vol > 0
    if B == 1:
        return np.array([vol[present[:, c], c].mean() if present[:, c].any() else 0.0 for c in range(C)])
    # Φ ∋ B: mean over all batches of B images (with replacement) that contain the class
    n = len(maps)
    import itertools

    out = []
    for c in range(C):
        sums = [vol[list(idx), c].sum() for idx in itertools.product(range(n), repeat=B)]
        pos = [s for s in sums if s > 0]
        out.append(np.mean(pos) if pos else 0.0)
    return np.array(out)


def est(source, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return phidice.estimate_epsilon(source, **kw)


def test_files_match_numpy_truth(nifti_dataset):
    d, maps, spacings = nifti_dataset
    eps = est(d)
    assert eps.dtype == torch.float64 and eps.shape == (4,)
    np.testing.assert_allclose(eps.numpy(), truth(maps, 4), rtol=1e-12)


def test_positives_only_divides_by_positive_images(nifti_dataset):
    d, maps, _ = nifti_dataset
    eps = est(d, positives_only=True).numpy()
    np.testing.assert_allclose(eps, truth(maps, 4, positives_only=True), rtol=1e-12)
    # class 2 is absent from 2 of 5 maps: the positive mean is the sum over the 3 positive maps / 3,
    # not / 5 (the divisor of the paper's calculateEpsPerClass)
    sum2 = sum(float((m == 2).sum()) for m in maps)
    assert eps[2] == pytest.approx(sum2 / 3)
    assert eps[2] != pytest.approx(sum2 / 5)


def test_ignore_index_counts_for_no_class(nifti_dataset):
    d, maps, _ = nifti_dataset
    eps = est(d, ignore_index=3, num_classes=4).numpy()
    expect = truth(maps, 4, ignore_index=3)
    assert expect[3] == 0
    np.testing.assert_allclose(eps, expect, rtol=1e-12)
    # an ignore label above num_classes is fine too
    big = [np.where(m == 3, 255, m) for m in maps]
    np.testing.assert_allclose(est(np.stack(big), ignore_index=255).numpy(), truth(maps, 3), rtol=1e-12)


def test_target_spacing_rescales_by_voxel_volume(nifti_dataset):
    d, maps, spacings = nifti_dataset
    scales = [np.prod(sp) / 8.0 for sp in spacings]  # → 2 mm isotropic voxels
    for po in (False, True):
        eps = est(d, target_spacing=(2, 2, 2), positives_only=po).numpy()
        np.testing.assert_allclose(eps, truth(maps, 4, scales, positives_only=po), rtol=1e-12)


def test_directory_glob_list_iterable_and_batch_forms_agree(nifti_dataset):
    d, maps, spacings = nifti_dataset
    files = sorted(d.glob("*.nii.gz"))
    ref = est(d, target_spacing=(1, 1, 1))
    for source in (str(d / "case*.nii.gz"), files, [str(f) for f in files]):
        torch.testing.assert_close(est(source, target_spacing=(1, 1, 1)), ref, rtol=1e-12, atol=0)
    pairs = ((m, sp) for m, sp in zip(maps, spacings))  # a generator of (array, spacing)
    torch.testing.assert_close(est(pairs, target_spacing=(1, 1, 1)), ref, rtol=1e-12, atol=0)
    plain = est(d)
    torch.testing.assert_close(est(iter([torch.from_numpy(m) for m in maps])), plain, rtol=1e-12, atol=0)
    torch.testing.assert_close(est(np.stack(maps)), plain, rtol=1e-12, atol=0)
    torch.testing.assert_close(est(torch.from_numpy(np.stack(maps))), plain, rtol=1e-12, atol=0)
    # one spacing for all arrays
    torch.testing.assert_close(est(np.stack(maps), spacing=(2, 2, 2), target_spacing=(1, 1, 1)), 8 * plain)


@pytest.mark.parametrize("workers", [2, 3, 16])
def test_reader_threads_match_serial(nifti_dataset, workers):
    d, maps, _ = nifti_dataset
    torch.testing.assert_close(
        est(d, workers=workers, positives_only=True), est(d, positives_only=True), rtol=0, atol=0
    )


def test_mha_via_simpleitk(tmp_path):
    maps = [np.zeros((6, 5, 4), np.uint8), np.zeros((6, 5, 4), np.uint8)]
    maps[0][:2, :2, :2] = 1
    maps[1][:3] = 2
    for i, m in enumerate(maps):
        img = sitk.GetImageFromArray(m.transpose(2, 1, 0))
        img.SetSpacing((1.0, 2.0, 4.0))
        sitk.WriteImage(img, str(tmp_path / f"m{i}.mha"))
    for workers in (1, 2):  # SimpleITK in reader threads too
        eps = est(tmp_path, target_spacing=(2, 2, 2), workers=workers).numpy()
        np.testing.assert_allclose(eps, truth(maps, 3, [1.0, 1.0]), rtol=1e-12)


@pytest.mark.parametrize("po", [False, True])
@pytest.mark.parametrize("B", [1, 2, 3])
def test_batch_wise_phi_is_expected_batch_volume(nifti_dataset, B, po):
    d, maps, _ = nifti_dataset
    eps = est(np.stack(maps), phi="BI", batch_size=B, positives_only=po).numpy()
    np.testing.assert_allclose(eps, truth(maps, 4, positives_only=po, B=B), rtol=1e-12)
    # Φ=BCI keeps the per-class vector of BI (the core sums it over the classes of φ); CI that of I
    np.testing.assert_array_equal(est(np.stack(maps), phi="BCI", batch_size=B, positives_only=po).numpy(), eps)
    np.testing.assert_array_equal(
        est(np.stack(maps), phi="CI", batch_size=B, positives_only=po).numpy(),
        est(np.stack(maps), positives_only=po).numpy(),
    )


def test_stats_report_counts(nifti_dataset):
    d, maps, _ = nifti_dataset
    s = epsilon_stats(d, workers=1, progress=False)
    assert s.n_images == 5
    assert s.n_positive.tolist() == [5, 4, 3, 4]
    table = s.to_markdown()
    assert "| 2 | 3 |" in table and table.count("\n|") == 6  # header, rule, 4 classes
    assert s.to_dict()["classes"][2]["n_positive"] == 3


def test_class_absent_everywhere_positives_only_is_zero_with_warning():
    y = np.zeros((2, 3, 3), int)
    y[0, 0, 0] = 2
    with pytest.warns(UserWarning, match=r"class\(es\) \[1\]"):
        eps = est(y, positives_only=True)
    assert eps.tolist() == [8.5, 0.0, 1.0]


# ----------------------------------------------------------------------------- bad input
def test_label_beyond_num_classes_names_the_file(nifti_dataset):
    d, _, _ = nifti_dataset
    with pytest.raises(ValueError, match=r"case00\.nii\.gz.*label 3.*num_classes=3"):
        est(d, num_classes=3)


def test_non_integer_and_unreadable_files(tmp_path, nifti_writer):
    nifti_writer(tmp_path / "a.nii.gz", np.ones((2, 2, 2)))
    nifti_writer(tmp_path / "b.nii.gz", np.full((2, 2, 2), 0.5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"b\.nii\.gz.*non-integer labels"):
        est(tmp_path)
    (tmp_path / "b.nii.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot read image file .*b\.nii\.gz"):
        est(tmp_path)
    with pytest.raises(ValueError, match=r"cannot read image file .*b\.nii\.gz"):
        est(tmp_path, workers=2)  # errors from reader threads arrive unchanged
    with pytest.raises(FileNotFoundError):
        est(tmp_path / "zzz.nii.gz")
    with pytest.raises(ValueError, match=r"label map #1 holds non-integer"):
        est([np.zeros((2, 2)), np.full((2, 2), 0.5)])


def test_spacing_missing_or_mismatched(tmp_path, nifti_writer):
    y = np.zeros((2, 4, 4), int)
    with pytest.raises(ValueError, match="target_spacing.*needs the voxel spacing of label map #0.*spacing="):
        est(y, target_spacing=(2, 2))
    with pytest.raises(ValueError, match="2 spatial axes.*target_spacing has 3"):
        est(y, spacing=(1, 1), target_spacing=(2, 2, 2))
    nifti_writer(tmp_path / "a.nii", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="spacing= is for array sources"):
        est(tmp_path, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="target_spacing must hold finite positive"):
        est(y, spacing=(1, 1), target_spacing=(0, 2))


def test_other_bad_arguments():
    y = np.zeros((2, 4), int)
    with pytest.raises(ValueError, match="unknown phi"):
        est(y, phi="XI")
    with pytest.raises(ValueError, match="batch_size"):
        est(y, batch_size=0)
    with pytest.raises(ValueError, match="negative label -1"):
        est(np.array([[0, -1]]))
    with pytest.raises(ValueError, match="no label maps"):
        est([])
    with pytest.raises(TypeError, match="source must be"):
        est(3.5)
