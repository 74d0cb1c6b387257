"""phidice.explain: Eq. 4 gradient values of empty and non-empty maps, checked against the core."""

import os

import nibabel as nib
import numpy as np
import pytest
import torch

import phidice
from phidice import dice_gradient


def scene(Y, P, I, P_empty, kinds, length=64, seed=0):
    """A batch built independently of explain's layout: 0/1 voxels at random positions.
    kinds: 'n' (non-empty: Y target voxels, I of them predicted, P − I predicted outside) or 'e' (empty)."""
    rng = np.random.default_rng(seed)
    C = len(Y)
    probs = torch.zeros(len(kinds), C, 4, length // 4, dtype=torch.float64)
    target = torch.zeros_like(probs)
    for b, kind in enumerate(kinds):
        for c in range(C):
            pos = rng.permutation(length)
            p = np.zeros(length)
            y = np.zeros(length)
            if kind == "n":
                y[pos[: Y[c]]] = 1
                p[pos[: I[c]]] = 1
                p[pos[Y[c] : Y[c] + P[c] - I[c]]] = 1
            else:
                p[pos[: P_empty[c]]] = 1
            probs[b, c] = torch.from_numpy(p.reshape(4, -1))
            target[b, c] = torch.from_numpy(y.reshape(4, -1))
    return probs, target


@pytest.mark.parametrize("phi", ["I", "CI", "BI", "BCI"])
@pytest.mark.parametrize("B", [1, 3])
def test_numbers_equal_core_dice_gradient(phi, B):
    Y, P, P_empty, eps = [20, 6], [10, 12], [7, 5], [3.0, 0.5]
    I = [5, 3]  # overlap ½ of min(Y, P)
    r = phidice.explain(
        phi=phi, eps=eps, batch_size=B, volumes=Y, predicted_volume=P, empty_predicted_volume=P_empty, overlap=0.5
    )
    assert r.volume == Y and r.intersection == I
    ne = dice_gradient(*scene(Y, P, I, P_empty, "n" * B), phi=phi, eps=torch.tensor(eps, dtype=torch.float64))
    ae = dice_gradient(*scene(Y, P, I, P_empty, "e" * B), phi=phi, eps=torch.tensor(eps, dtype=torch.float64))
    mixed = (
        ae
        if B == 1
        else dice_gradient(
            *scene(Y, P, I, P_empty, "e" + "n" * (B - 1)), phi=phi, eps=torch.tensor(eps, dtype=torch.float64)
        )
    )
    np.testing.assert_allclose(r.nonempty_g0, ne.g0[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(r.nonempty_g1, ne.g1[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(r.all_empty_g0, ae.g0[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(r.empty_g0, mixed.g0[0].numpy(), rtol=1e-12)


def test_image_wise_values_by_hand():
    """Φ=I, mean over |Φ| = B·C subsets: y=0 → (2I+ε)/(S+ε)², y=1 → that − 2/(S+ε), empty → ε/(P+ε)²."""
    r = phidice.explain(phi="I", eps=2.0, batch_size=2, volumes=[40, 10], predicted_volume=[20, 10])
    w = 1 / 4
    for k, (Y, P) in enumerate([(40, 20), (10, 10)]):
        I = 0.5 * min(Y, P)
        D = Y + P + 2.0
        assert r.nonempty_g0[k] == pytest.approx(w * (2 * I + 2.0) / D**2, rel=1e-12)
        assert r.nonempty_g1[k] == pytest.approx(w * ((2 * I + 2.0) / D**2 - 2 / D), rel=1e-12)
        assert r.empty_g0[k] == pytest.approx(w * 2.0 / (P + 2.0) ** 2, rel=1e-12)


def test_fractional_predicted_volumes_are_realised_exactly():
    r = phidice.explain(phi="I", eps=1e-5, batch_size=1, volumes=[8789.4], predicted_volume=[1234.56], overlap=0.3)
    Y, P = 8789.0, 1234.56
    I = 0.3 * P
    assert r.volume == [Y] and r.intersection[0] == pytest.approx(I)
    assert r.nonempty_g0[0] == pytest.approx((2 * I + 1e-5) / (Y + P + 1e-5) ** 2, rel=1e-10)
    assert r.empty_g0[0] == pytest.approx(1e-5 / (P + 1e-5) ** 2, rel=1e-10)


def test_flags_follow_section_2_2():
    v = [8789]
    small_i = phidice.explain(phi="I", eps=1e-5, batch_size=2, volumes=v)
    assert small_i.flagged == [True] and small_i.ratio[0] < 1e-6
    heuristic = phidice.explain(phi="I", eps="auto", batch_size=1, volumes=v)
    assert heuristic.eps == [8789.0] and heuristic.flagged == [False]
    assert 0.5 < heuristic.ratio[0] < 2  # Eq. 5: ε ≈ v̂ matches the non-empty y=0 gradient
    bi = phidice.explain(phi="BI", eps=1e-5, batch_size=2, volumes=v)
    assert bi.flagged == [False]
    assert bi.all_empty_ratio[0] < 1e-6  # an all-empty batch under BI behaves like Φ=I
    assert phidice.explain(phi="BI", eps=1e-5, batch_size=1, volumes=v).flagged == [True]  # B=1: BI = I
    md = small_i.to_markdown()
    assert (
        "| label | volume |" in md and "| 1 | 8789 |" in md
    )  # the volume given describes label 1 and "empty maps barely learn" in md


def write(path, arr, spacing=(1.0, 1.0, 1.0)):
    nib.save(nib.Nifti1Image(np.asarray(arr, np.uint8), np.diag([*spacing, 1.0])), str(path))


@pytest.fixture
def dataset_with_empty_maps(tmp_path):
    """4 maps, 8×8×4, classes 0..2: two have no class 1 (empty maps), class 2 everywhere."""
    for i, (n1, n2) in enumerate([(30, 5), (0, 9), (50, 3), (0, 4)]):
        a = np.zeros(256, np.uint8)
        a[:n1] = 1
        a[100 : 100 + n2] = 2
        write(tmp_path / f"c{i}.nii.gz", a.reshape(8, 8, 4))
    return tmp_path


def test_recommendations_match_the_paper(dataset_with_empty_maps):
    d = dataset_with_empty_maps
    eps_data = phidice.estimate_epsilon(d, workers=1, progress=False)[1:].tolist()  # E[Σy], foreground
    assert eps_data == [20.0, 5.25]

    r = phidice.explain(labels=d, batch_size=2, intent="empty", workers=1)
    assert r.classes == [1, 2] and r.empty_fraction == [0.5, 0.0]
    assert r.volume == [40.0, 5.0]  # typical non-empty volume: mean over maps containing the class
    rec = r.recommendation
    assert rec["phi"] == "BI" and rec["batch_size"] == 2
    assert rec["alternative"]["phi"] == "I" and rec["alternative"]["eps"] == pytest.approx(eps_data)
    assert len(rec["why"]) == 2

    r1 = phidice.explain(labels=d, batch_size=1, intent="empty", workers=1)
    assert r1.recommendation["phi"] == "I" and r1.recommendation["eps"] == pytest.approx(eps_data)
    # the recommended configurations do give empty maps a gradient
    assert not phidice.explain(labels=d, phi="I", eps=r1.recommendation["eps"], batch_size=1, workers=1).any_flagged
    assert not phidice.explain(labels=d, phi="BI", eps=1e-5, batch_size=2, workers=1).any_flagged

    m = phidice.explain(labels=d, batch_size=2, intent="missing", workers=1)
    assert m.recommendation["phi"] == "I" and m.recommendation["eps"] == 1e-5
    assert all(m.flagged)  # ... and that one leaves missing (empty) maps without gradient, as wanted
    assert "Recommendation (missing)" in m.to_markdown()


def test_eps_auto_from_labels_is_estimate_epsilon(dataset_with_empty_maps):
    d = dataset_with_empty_maps
    for phi, B in (("I", 2), ("BI", 3)):
        r = phidice.explain(labels=d, phi=phi, eps="auto", batch_size=B, workers=1)
        expect = phidice.estimate_epsilon(d, phi=phi, batch_size=B, workers=1, progress=False)[1:]
        assert r.eps == pytest.approx(expect.tolist())


def test_plot_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "eq5.png"
    r = phidice.explain(volumes=[100, 12], eps=[1e-5, 12], plot=out)
    assert r.plot == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["eq5.png"]

    import matplotlib.figure

    def broken(self, fname, **kw):  # writes part of a PNG wherever it is sent, then fails
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG partial")
        else:
            with open(fname, "wb") as f:
                f.write(b"\x89PNG partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    bad = tmp_path / "bad.png"
    with pytest.raises(RuntimeError, match="disk full"):
        phidice.explain(volumes=[100], plot=bad)
    assert sorted(os.listdir(tmp_path)) == ["eq5.png"]  # no partial file, no temp file


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="exactly one of volumes= .* or labels="):
        phidice.explain()
    with pytest.raises(ValueError, match="exactly one"):
        phidice.explain(volumes=[3], labels=np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="volumes must be finite and > 0"):
        phidice.explain(volumes=[10, -1])
    with pytest.raises(ValueError, match="eps has 3 values for 2 classes"):
        phidice.explain(volumes=[10, 5], eps=[1, 2, 3])
    with pytest.raises(ValueError, match="eps must be a number, one per class, or 'auto'"):
        phidice.explain(volumes=[10], eps="big")
    with pytest.raises(ValueError, match="intent must be"):
        phidice.explain(volumes=[10], intent="both")
    with pytest.raises(ValueError, match="unknown phi"):
        phidice.explain(volumes=[10], phi="XB")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        phidice.explain(volumes=[10], plot=tmp_path / "no" / "p.png")
    with pytest.raises(ValueError, match=r"\.png"):
        phidice.explain(volumes=[10], plot=tmp_path / "p.pdf")
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 0.5, np.float32), np.eye(4)), str(tmp_path / "f.nii"))
    with pytest.raises(ValueError, match=r"f\.nii.*non-integer labels"):
        phidice.explain(labels=tmp_path / "f.nii", plot=tmp_path / "p.png", workers=1)
    assert not (tmp_path / "p.png").exists()
    with pytest.raises(ValueError, match="no foreground class"):
        phidice.explain(labels=np.zeros((2, 3), int))


def test_plotted_eq5_curves_equal_core_gradient():
    from phidice.diagnostics.explain import eq5_curves

    Y, eps = 20, 5.0
    for P in (4, 10, 40):  # a·min(Y, P) whole voxels
        empty, nonempty = eq5_curves(np.array([P]), Y, eps, overlap=0.5)
        I = min(Y, P) // 2
        probs, target = scene([Y], [P], [I], [P], "n", length=64)
        g = dice_gradient(probs, target, phi="I", eps=eps, reduction="sum")
        assert g.g0[0, 0].item() == pytest.approx(nonempty[0], rel=1e-12)
        probs, target = scene([Y], [P], [I], [P], "e", length=64)
        g = dice_gradient(probs, target, phi="I", eps=eps, reduction="sum")
        assert g.g0[0, 0].item() == pytest.approx(empty[0], rel=1e-12)
