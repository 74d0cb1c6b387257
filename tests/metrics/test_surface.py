"""HD95 and NSD: against MONAI on anisotropic 2D/3D label maps, by hand on a 1-D example, and every empty
reference/prediction combination against the table of docs/metrics.md."""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

ndimage = pytest.importorskip("scipy.ndimage")

from phidice.metrics import dice_score, hd95, normalized_surface_dice, surface_distances, surface_metrics
from phidice.metrics.surface import image_diagonal

NAN = math.nan


def _blobs(shape, C, rng, sigma=2.0):
    """A label map of smooth random blobs of classes 1..C-1 (0 = background)."""
    f = ndimage.gaussian_filter(rng.normal(size=(C, *shape)), sigma, axes=tuple(range(1, len(shape) + 1)))
    lab = f.argmax(0)
    top = f.max(0)
    lab[top < np.quantile(top, 0.45)] = 0
    return lab


def _cases(shape, C, seed):
    """Reference and prediction (B = 4): unrelated blobs, a shifted copy, an eroded copy, a copy touching the border."""
    rng = np.random.default_rng(seed)
    ref = np.stack([_blobs(shape, C, rng) for _ in range(4)])
    pred = np.stack(
        [
            _blobs(shape, C, rng),
            np.roll(ref[1], 2, axis=0),
            np.where(ndimage.binary_erosion(ref[2] > 0), ref[2], 0),
            ref[3],
        ]
    )
    pred[3][(slice(0, 3),) * len(shape)] = 1  # a corner block of class 1 at the image border
    return pred, ref


def _one_hot(x, C):
    return torch.nn.functional.one_hot(torch.from_numpy(x).long(), C).movedim(-1, 1)


@pytest.mark.parametrize(
    "shape, spacing, taus", [((48, 37), (0.7, 1.9), (1.7, 3.1, 0.5)), ((26, 22, 12), (0.8, 1.3, 2.5), (1.7, 3.1, 2.05))]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_monai(shape, spacing, taus, seed):
    monai_metrics = pytest.importorskip("monai.metrics")
    monai_utils = pytest.importorskip("monai.metrics.utils")
    C = 4
    pred, ref = _cases(shape, C, seed)
    ours = surface_metrics(
        pred,
        ref,
        spacing,
        tolerance=list(taus),
        num_classes=C,
        include_background=False,
        empty="ratio",
        hd_worst=float("inf"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on empty classes
        hd = monai_metrics.HausdorffDistanceMetric(percentile=95, include_background=False, reduction="none")(
            _one_hot(pred, C), _one_hot(ref, C), spacing=list(spacing)
        )
        nsd = monai_metrics.SurfaceDiceMetric(class_thresholds=list(taus), include_background=False, reduction="none")(
            _one_hot(pred, C), _one_hot(ref, C), spacing=list(spacing)
        )
    assert ours.hd95.shape == ours.nsd.shape == (4, C - 1)
    # MONAI's NSD counts voxels, exact here because no distance lies within 1e-4 mm of a tolerance (checked
    # below; float32 distances could otherwise move a voxel across τ)
    np.testing.assert_allclose(ours.nsd.numpy(), nsd.numpy(), rtol=1e-6, atol=0)
    assert len(np.unique(np.round(ours.nsd.numpy(), 6))) > 3 and (ours.hd95.numpy() > 0).any()
    assert np.isfinite(ours.hd95.numpy()).all()  # every class is present in every case here
    for b in range(4):
        for c in range(1, C):
            d_p, d_y = surface_distances(pred[b] == c, ref[b] == c, spacing)
            assert np.abs(np.r_[d_p, d_y][:, None] - np.asarray(taus)[None]).min() > 1e-4
            # the same surfaces and distances as MONAI (float32 there), both directions
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, (m_p, m_y), _ = monai_utils.get_edge_surface_distance(
                    torch.from_numpy(pred[b] == c), torch.from_numpy(ref[b] == c), spacing=list(spacing), symmetric=True
                )
            np.testing.assert_allclose(np.sort(d_p), np.sort(m_p.numpy()), rtol=1e-6)
            np.testing.assert_allclose(np.sort(d_y), np.sort(m_y.numpy()), rtol=1e-6)
            # HD95 = the larger directed linear-interpolated 95th percentile. MONAI's torch.quantile on float32
            # places the rank q·(n − 1) with a float32 error of up to (n − 1)·2⁻²⁴, which moves the result by
            # that fraction of the gap between neighbouring distances: the bound below, nothing looser
            n = max(d_p.size, d_y.size)
            gap = max(np.diff(np.sort(d_p)).max(initial=0), np.diff(np.sort(d_y)).max(initial=0))
            assert abs(ours.hd95[b, c - 1].item() - hd[b, c - 1].item()) <= n * 2.0**-24 * gap + 2e-6 * hd[b, c - 1]


def test_one_dimensional_by_hand():
    """Surfaces in 1-D are the end voxels: ref {2, 5}, pred {4, 8}, 1.5 mm voxels.
    pred → ref: 1.5, 4.5 mm; ref → pred: 3.0, 1.5 mm. Directed 95th percentiles (linear): 1.5 + 0.95·3 = 4.35
    and 1.5 + 0.95·1.5 = 2.925, so HD95 = 4.35. NSD at 1.5 mm: (1 + 1)/4; at 3 mm: (1 + 2)/4."""
    ref = np.zeros((1, 10), int)
    ref[0, 2:6] = 1
    pred = np.zeros((1, 10), int)
    pred[0, 4:9] = 1
    assert hd95(pred, ref, (1.5,), include_background=False).item() == pytest.approx(4.35)
    assert normalized_surface_dice(pred, ref, (1.5,), 1.5, include_background=False).item() == 0.5
    assert normalized_surface_dice(pred, ref, (1.5,), 3.0, include_background=False).item() == 0.75
    assert surface_metrics(pred, ref, (1.5,), percentile=100, include_background=False).hd95.item() == 4.5
    d_p, d_y = surface_distances(pred[0] == 1, ref[0] == 1, (1.5,))
    assert sorted(d_p) == [1.5, 4.5] and sorted(d_y) == [1.5, 3.0]


def test_layouts_and_per_image_spacing():
    pred, ref = _cases((20, 18), 3, 5)
    sp = np.array([[1.0, 2.0], [0.5, 0.5], [3.0, 1.0], [1.2, 0.9]])
    by_labels = surface_metrics(pred, ref, sp, tolerance=2.0, include_background=False)
    maps = surface_metrics(
        _one_hot(pred, 3).bool(), _one_hot(ref, 3).bool(), sp, tolerance=2.0, include_background=False
    )
    mixed = surface_metrics(
        torch.from_numpy(pred)[:, None], _one_hot(ref, 3).float(), sp, tolerance=2.0, include_background=False
    )
    for other in (maps, mixed):
        assert torch.equal(by_labels.hd95, other.hd95) and torch.equal(by_labels.nsd, other.nsd)
    for b in range(4):  # each image with its own spacing
        one = surface_metrics(
            pred[b : b + 1], ref[b : b + 1], sp[b], tolerance=2.0, num_classes=3, include_background=False
        )
        assert torch.equal(one.hd95[0], by_labels.hd95[b]) and torch.equal(one.nsd[0], by_labels.nsd[b])
    assert surface_metrics(pred, ref, (1.0, 1.0)).hd95.shape == (4, 3)  # include_background=True as dice_score
    assert surface_metrics(pred, ref, (1.0, 1.0)).nsd is None  # no tolerance: HD95 only


# docs/metrics.md, "Surface metrics": (HD95, NSD) per convention for (Y = ∅, P = ∅), (Y = ∅, P ≠ ∅), (Y ≠ ∅, P = ∅)
W = "worst"
TABLE = {
    "nan": [(NAN, NAN), (NAN, NAN), (W, 0.0)],
    "ratio": [(NAN, NAN), (W, 0.0), (W, 0.0)],
    "one": [(0.0, 1.0), (W, 0.0), (W, 0.0)],
    "zero": [(W, 0.0), (W, 0.0), (W, 0.0)],
}


def _empty_batch():
    """Images 0–2: the three empty combinations of class 1; image 3: both present."""
    shape = (7, 9)
    ref = np.zeros((4, *shape), int)
    pred = np.zeros((4, *shape), int)
    pred[1, 2:4, 2:5] = 1  # false positives on an empty reference
    ref[2, 1:5, 3:6] = 1  # missed structure
    ref[3, 1:5, 3:6] = 1
    pred[3, 2:5, 3:6] = 1
    return pred, ref, shape


@pytest.mark.parametrize("empty", list(TABLE))
@pytest.mark.parametrize("hd_worst", ["diagonal", float("inf"), 40.0])
def test_every_empty_combination(empty, hd_worst):
    pred, ref, shape = _empty_batch()
    spacing = (1.5, 0.8)
    worst = {"diagonal": image_diagonal(shape, spacing)}.get(hd_worst, hd_worst)
    assert image_diagonal(shape, spacing) == pytest.approx(math.hypot(6 * 1.5, 8 * 0.8))
    got = surface_metrics(
        pred, ref, spacing, tolerance=1.0, num_classes=2, include_background=False, empty=empty, hd_worst=hd_worst
    )
    for i, (want_hd, want_nsd) in enumerate(TABLE[empty]):
        want_hd = worst if want_hd == W else want_hd
        for got_v, want in ((got.hd95[i, 0].item(), want_hd), (got.nsd[i, 0].item(), want_nsd)):
            assert (math.isnan(got_v) and math.isnan(want)) or got_v == want, (empty, i, got_v, want)
    measured = got.hd95[3, 0].item()
    assert 0 < measured < worst and 0 < got.nsd[3, 0].item() < 1
    # consistent with the Dice score: undefined (NaN) exactly where DSC is, worst exactly where DSC is 0
    dsc = dice_score(pred, ref, num_classes=2, include_background=False, empty=empty)[:3, 0]
    assert torch.equal(torch.isnan(dsc), torch.isnan(got.hd95[:3, 0]))
    assert torch.equal(dsc == 0, got.hd95[:3, 0] == worst) and torch.equal(dsc == 0, got.nsd[:3, 0] == 0)


def test_empty_combinations_against_monai():
    """MONAI: NSD NaN when both are empty, 0 when one is (= empty="ratio"); Hausdorff distance (max) NaN when both
    are empty, inf when one is (= "ratio" with hd_worst=inf). Its percentile version returns NaN whenever one side
    is empty (torch.quantile of infinite distances), so HD95 there is undefined where ours is the worst case."""
    monai_metrics = pytest.importorskip("monai.metrics")
    pred, ref, _ = _empty_batch()
    kw = dict(tolerance=1.0, num_classes=2, include_background=False, empty="ratio", hd_worst=float("inf"))
    ours = surface_metrics(pred, ref, (1.5, 0.8), **kw)
    ours_max = surface_metrics(pred, ref, (1.5, 0.8), percentile=100, **kw)
    args = (_one_hot(pred, 2), _one_hot(ref, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = monai_metrics.HausdorffDistanceMetric(reduction="none")(*args, spacing=[1.5, 0.8])
        hd95 = monai_metrics.HausdorffDistanceMetric(percentile=95, reduction="none")(*args, spacing=[1.5, 0.8])
        nsd = monai_metrics.SurfaceDiceMetric([1.0], reduction="none")(*args, spacing=[1.5, 0.8])
    np.testing.assert_allclose(ours_max.hd95.numpy(), hd.numpy(), rtol=1e-6)  # NaN, inf, inf, finite
    np.testing.assert_allclose(ours.nsd.numpy(), nsd.numpy(), rtol=1e-6)  # NaN, 0, 0, measured
    assert math.isnan(ours.hd95[0, 0]) and math.isinf(ours.hd95[1, 0]) and math.isinf(ours.hd95[2, 0])
    assert torch.isnan(hd95[:3, 0]).all() and hd95[3, 0].item() == pytest.approx(ours.hd95[3, 0].item(), rel=1e-6)


def test_bad_input():
    pred, ref, _ = _empty_batch()
    with pytest.raises(ValueError, match="spacing is required"):
        surface_metrics(pred, ref, None)
    with pytest.raises(ValueError, match="spacing must have 2 values"):
        surface_metrics(pred, ref, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="> 0"):
        surface_metrics(pred, ref, (1.0, 0.0))
    with pytest.raises(ValueError, match="tolerance"):
        surface_metrics(pred, ref, (1.0, 1.0), tolerance=-1.0)
    with pytest.raises(ValueError, match="one per reported class"):
        surface_metrics(pred, ref, (1.0, 1.0), tolerance=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="hd_worst"):
        surface_metrics(pred, ref, (1.0, 1.0), hd_worst="max")
    with pytest.raises(ValueError, match="empty"):
        surface_metrics(pred, ref, (1.0, 1.0), empty="skip")
    with pytest.raises(ValueError, match="shape"):
        surface_metrics(pred, ref[:, :, :5], (1.0, 1.0))
    with pytest.raises(ValueError, match="labels must lie in"):
        surface_metrics(pred, ref + 2, (1.0, 1.0), num_classes=2)
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(pred[0] == 1, ref[0] == 1, (1.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        normalized_surface_dice(pred, ref, (1.0, 1.0), None)


def test_scipy_is_imported_only_when_needed():
    """phidice.metrics imports without scipy; a surface metric then says which extra to install."""
    code = (
        "import sys; sys.modules['scipy'] = None\n"
        "import numpy as np\n"
        "import phidice.metrics as m\n"
        "a = np.zeros((1, 4, 4), int); a[0, 1:3, 1:3] = 1\n"
        "m.bootstrap_ci([0.1, 0.5, 0.7]); m.paired_test([0.1, 0.5, 0.7], [0.2, 0.4, 0.8])\n"
        "try:\n    m.surface_metrics(a, a, (1.0, 1.0))\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'phidice[eval]'" in out.stdout


@pytest.mark.parametrize("empty", ["nan", "one"])
def test_label_map_path_equals_the_mask_path(empty):
    """The folder evaluation scores each class on its bounding box (label_map_scores): the same numbers as
    surface_metrics on whole masks, for classes at the image border, absent from one map, or from both."""
    from phidice.metrics.surface import label_map_scores

    pred, ref = _cases((21, 17, 9), 4, 3)
    pred[0][pred[0] == 3] = 0  # class 3 missed in image 0
    ref[1][ref[1] == 2] = 0  # class 2 hallucinated in image 1
    pred[2][pred[2] == 1], ref[2][ref[2] == 1] = 0, 0  # class 1 absent from both in image 2
    spacing = (0.9, 1.4, 2.2)
    whole = surface_metrics(pred, ref, spacing, tolerance=1.5, num_classes=5, empty=empty)
    for b in range(4):
        hd, nsd = label_map_scores(pred[b], ref[b], spacing, [0, 1, 2, 3, 4], tolerance=1.5, empty=empty)
        np.testing.assert_array_equal(hd, whole.hd95[b].numpy())
        np.testing.assert_array_equal(nsd, whole.nsd[b].numpy())
    assert whole.nsd[0, 3] == 0  # missed: worst under every convention
    hallucinated = whole.nsd[1, 2].item()
    assert hallucinated == 0 if empty == "one" else math.isnan(hallucinated)
    both_empty = (0.0, 1.0) if empty == "one" else (NAN, NAN)  # class 1 of image 2, class 4 everywhere
    for b, c in [(2, 1), (0, 4), (1, 4), (2, 4), (3, 4)]:
        np.testing.assert_array_equal([whole.hd95[b, c].item(), whole.nsd[b, c].item()], both_empty)
