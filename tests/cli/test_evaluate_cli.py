"""``phidice evaluate`` on a small NIfTI/NRRD folder written here, with 2 × 2 × 3 mm headers.

Hand-built cases (classes 1 and 2; class 2 is labelled in group HGG only, as ET in the paper's BRATS):

    case group  class 1: I  P  Y   DSC    class 2: I  P  Y   DSC (empty=nan)
    a    HGG             8  10 10  0.8             5  6  5   10/11
    b    HGG             4  4  4   1.0             3  3  6   6/9
    c    LGG             6  6  6   1.0             0  3  0   NaN
    d    LGG             0  0  3   0.0             0  0  0   NaN

One voxel is 2·2·3 mm³ = 0.012 ml. Predicted class-2 volumes a=6, b=3, c=3, d=0 voxels: AUC of HGG
= (1 + 1 + 0.5 + 1) / 4 = 0.875 (b and c tie). Class 1: a=10, b=4, c=6, d=0 → (1 + 1 + 0 + 1) / 4 = 0.75.
"""

import csv
import math

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from phidice.cli.main import main

SHAPE = (4, 5, 6)
SPACING = (2.0, 2.0, 3.0)
ML = 0.012


def _fill(arr, label, n, start=0):
    flat = arr.reshape(-1)
    idx = np.flatnonzero(flat == 0)[start : start + n] if label else None
    flat[idx] = label
    return idx


def _cases():
    """(ref, pred) per case, built voxel by voxel on flat indices."""
    out = {}
    N = int(np.prod(SHAPE))
    idx = np.arange(N)

    def vol(**ranges):
        v = np.zeros(N, dtype=np.int16)
        for label, sl in ranges.items():
            v[idx[sl]] = int(label[1:])
        return v.reshape(SHAPE)

    out["a"] = (vol(c1=slice(0, 10), c2=slice(20, 25)), vol(c1=slice(2, 12), c2=slice(20, 26)))
    out["b"] = (vol(c1=slice(0, 4), c2=slice(30, 36)), vol(c1=slice(0, 4), c2=slice(30, 33)))
    out["c"] = (vol(c1=slice(50, 56)), vol(c1=slice(50, 56), c2=slice(70, 73)))
    out["d"] = (vol(c1=slice(0, 3)), vol())
    return out


def _save_nifti(path, arr, spacing=SPACING, dtype=None):
    img = nib.Nifti1Image(arr.astype(dtype or arr.dtype), np.diag([*spacing, 1.0]))
    nib.save(img, str(path))


@pytest.fixture()
def folders(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for name, (ref, prd) in _cases().items():
        _save_nifti(gt / f"{name}.nii.gz", ref)
        if name == "d":  # another format: NRRD through SimpleITK (arrays are x, y, z here, z, y, x there)
            img = sitk.GetImageFromArray(prd.transpose(2, 1, 0).astype(np.uint8))
            img.SetSpacing(SPACING)
            sitk.WriteImage(img, str(pred / "d.nrrd"))
        elif name == "c":  # labels saved as float, as many pipelines do
            _save_nifti(pred / "c.nii", prd, dtype=np.float32)
        else:
            _save_nifti(pred / f"{name}.nii.gz", prd)
    groups = tmp_path / "groups.csv"
    groups.write_text("case,group\na,HGG\nb.nii.gz,HGG\nc,LGG\nd,LGG\n")
    return tmp_path, pred, gt, groups


def _rows(out):
    with open(out / "per_case.csv", newline="") as f:
        return {(r["case"], int(r["class"])): r for r in csv.DictReader(f)}


def _evaluate(*args):
    return main(["evaluate", *map(str, args), "--no-progress"])


def test_end_to_end_hand_values(folders, capsys):
    tmp, pred, gt, groups = folders
    out = tmp / "out"
    assert _evaluate("--pred", pred, "--gt", gt, "--groups", groups, "--out", out) == 0
    rows = _rows(out)
    assert sorted(rows) == [(c, k) for c in "abcd" for k in (1, 2)]  # background left out by default
    expect = {
        ("a", 1): (0.8, 10, 10),
        ("a", 2): (10 / 11, 5, 6),
        ("b", 1): (1.0, 4, 4),
        ("b", 2): (6 / 9, 6, 3),
        ("c", 1): (1.0, 6, 6),
        ("c", 2): (math.nan, 0, 3),
        ("d", 1): (0.0, 3, 0),
        ("d", 2): (math.nan, 0, 0),
    }
    for key, (dsc, vref, vpred) in expect.items():
        r = rows[key]
        got = float(r["DSC"])
        assert (math.isnan(got) and math.isnan(dsc)) or got == pytest.approx(dsc, abs=1e-9), key
        assert float(r["V_ref_ml"]) == pytest.approx(vref * ML, abs=1e-12)
        assert float(r["V_pred_ml"]) == pytest.approx(vpred * ML, abs=1e-12)
        assert float(r["dV_ml"]) == pytest.approx((vpred - vref) * ML, abs=1e-12)
        assert (int(r["V_ref_vox"]), int(r["V_pred_vox"])) == (vref, vpred)
        assert r["group"] == ("HGG" if key[0] in "ab" else "LGG")
    with open(out / "roc.csv", newline="") as f:
        auc = {int(r["class"]): float(r["auc"]) for r in csv.DictReader(f)}
    assert auc == {1: pytest.approx(0.75), 2: pytest.approx(0.875)}
    summary = (out / "summary.md").read_text()
    assert "detecting group `HGG`" in summary and "larger mean reference volume" in summary
    # class 2, all cases: DSC mean of the two defined (10/11, 6/9); the pooled Φ = BI Dice counts c's false
    # positives: 2·8/(12+11); within HGG 2·8/(9+11) = 0.8
    mean2 = (10 / 11 + 6 / 9) / 2
    std2 = np.std([10 / 11, 6 / 9], ddof=1)
    assert f"| 2 | all | 4 | {mean2:.3f} ± {std2:.3f} | 2 | {16 / 23:.3f} |" in summary
    assert f"| 2 | HGG | 2 | {mean2:.3f} ± {std2:.3f} | 2 | 0.800 |" in summary
    dv2 = np.array([1, -3, 3, 0]) * ML
    assert f"| {dv2.mean():.3f} ± {dv2.std(ddof=1):.3f} |" in summary
    assert "| 2 | LGG | 2 | – | 0 | – |" in summary  # undefined everywhere under empty=nan
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["per_case.csv", "roc.csv", "roc.png", "summary.md"]
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("empty, c2, d2", [("one", 0.0, 1.0), ("zero", 0.0, 0.0), ("ratio", 0.0, math.nan)])
def test_empty_conventions_and_spacing_override(folders, empty, c2, d2):
    tmp, pred, gt, _ = folders
    out = tmp / f"out_{empty}"
    assert (
        _evaluate(
            "--pred", pred, "--gt", gt, "--out", out, "--empty", empty, "--spacing", 1, 1, 1, "--include-background"
        )
        == 0
    )
    rows = _rows(out)
    for key, want in ((("c", 2), c2), (("d", 2), d2)):
        got = float(rows[key]["DSC"])
        assert (math.isnan(got) and math.isnan(want)) or got == want
    assert float(rows["a", 1]["V_ref_ml"]) == pytest.approx(10 * 0.001)  # 1 mm³ voxels from --spacing
    assert int(rows["a", 0]["V_ref_vox"]) == 120 - 15  # background reported with --include-background
    assert not (out / "roc.png").exists()  # no groups, no ROC


def _err(capsys):
    return capsys.readouterr().err


def test_shape_mismatch_names_file(folders, capsys):
    tmp, pred, gt, _ = folders
    _save_nifti(pred / "b.nii.gz", np.zeros((4, 5, 7), dtype=np.int16))
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o") == 2
    err = _err(capsys)
    assert "b.nii.gz" in err and "shape" in err


def test_spacing_mismatch_names_file(folders, capsys):
    tmp, pred, gt, _ = folders
    _save_nifti(pred / "a.nii.gz", _cases()["a"][1], spacing=(1.0, 1.0, 3.0))
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o") == 2
    err = _err(capsys)
    assert "a.nii.gz" in err and "spacing" in err and "1×1×3 mm" in err


def test_missing_pairs(folders, capsys):
    tmp, pred, gt, _ = folders
    (pred / "b.nii.gz").unlink()
    _save_nifti(pred / "e.nii.gz", np.zeros(SHAPE, dtype=np.int16))
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o") == 2
    err = _err(capsys)
    assert "b.nii.gz" in err and "e.nii.gz" in err and "--allow-missing" in err
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--allow-missing") == 0
    assert {k[0] for k in _rows(tmp / "o")} == {"a", "c", "d"}
    assert "without a prediction: b.nii.gz" in (tmp / "o" / "summary.md").read_text()


def test_probabilities_need_threshold(folders, capsys):
    tmp, pred, gt, _ = folders
    ref = _cases()["a"][0]
    prob = np.where(ref == 1, 0.9, 0.1).astype(np.float32)
    prob.reshape(-1)[10] = 0.5  # exactly on the threshold: counts as foreground
    _save_nifti(pred / "a.nii.gz", prob)
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o") == 2
    err = _err(capsys)
    assert "a.nii.gz" in err and "--threshold" in err
    # with --threshold every prediction must be a probability map: the integer files are named
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--threshold", 0.5) == 2
    assert "drop --threshold" in _err(capsys)
    for name in "bcd":
        for f in pred.glob(f"{name}.*"):
            f.unlink()
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--threshold", 0.5, "--allow-missing") == 0
    r = _rows(tmp / "o")["a", 1]
    assert float(r["DSC"]) == pytest.approx(2 * 10 / (11 + 10))  # 10 true voxels + 1 at p = 0.5


@pytest.mark.parametrize(
    "content, extra, match",
    [
        ("case,group\na,HGG\nb,HGG\nc,LGG\n", [], "no group"),
        ("name,grp\na,HGG\n", [], "header"),
        ("case,group\na,HGG\na,LGG\n", [], "groups 'HGG' and 'LGG'"),
        ("case,group\na,HGG\nb,HGG\nc,LGG\nd,LGG\n", ["--positive-group", "GBM"], "GBM"),
    ],
)
def test_bad_groups(folders, capsys, content, extra, match):
    tmp, pred, gt, _ = folders
    bad = tmp / "bad.csv"
    bad.write_text(content)
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--groups", bad, *extra) == 2
    assert match in _err(capsys)


def test_positive_group_option_flips_the_curve(folders):
    tmp, pred, gt, groups = folders
    out = tmp / "o"
    assert _evaluate("--pred", pred, "--gt", gt, "--groups", groups, "--positive-group", "LGG", "--out", out) == 0
    with open(out / "roc.csv", newline="") as f:
        auc = {int(r["class"]): float(r["auc"]) for r in csv.DictReader(f)}
    assert auc == {1: pytest.approx(0.25), 2: pytest.approx(0.125)}


def test_labels_out_of_range_and_missing_folder(folders, capsys):
    tmp, pred, gt, _ = folders
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--num-classes", 2) == 2
    err = _err(capsys)
    assert "case 'a'" in err and "[0, 1]" in err
    assert _evaluate("--pred", tmp / "nope", "--gt", gt, "--out", tmp / "o") == 2
    assert "nope" in _err(capsys)
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--threshold", "nan") == 2
    assert "--threshold must be a finite number" in _err(capsys)
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--spacing", 1, 0, 1) == 2
    assert "> 0" in _err(capsys)
    assert not (tmp / "o").exists()  # nothing written on error


def test_three_groups_one_vs_rest(folders):
    tmp, pred, gt, _ = folders
    g3 = tmp / "g3.csv"
    g3.write_text("case,group\na,HGG\nb,HGG\nc,LGG\nd,other\n")
    out = tmp / "o"
    assert _evaluate("--pred", pred, "--gt", gt, "--groups", g3, "--out", out) == 0
    assert not (out / "roc.png").exists()
    assert "--positive-group for a ROC" in (out / "summary.md").read_text()
    assert _evaluate("--pred", pred, "--gt", gt, "--groups", g3, "--positive-group", "HGG", "--out", out) == 0
    with open(out / "roc.csv", newline="") as f:
        auc = {int(r["class"]): float(r["auc"]) for r in csv.DictReader(f)}
    assert auc == {1: pytest.approx(0.75), 2: pytest.approx(0.875)}  # HGG vs the rest = HGG vs LGG ∪ other


def _summary_rows(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    return head, {
        (r[0], r[1]): dict(zip(head, r))
        for r in ([x.strip() for x in ln.strip("|").split("|")] for ln in lines[1:])
        if len(r) == len(head)
    }


def test_intervals_and_surface_metrics_in_the_summary(folders):
    """CI columns against scipy.stats.bootstrap (same seed); HD95/NSD columns against surface_metrics on the arrays;
    a group with one case shows "n < 2" instead of an interval."""
    stats = pytest.importorskip("scipy.stats")
    from phidice.metrics import surface_metrics

    tmp, pred, gt, _ = folders
    g3 = tmp / "g3.csv"
    g3.write_text("case,group\na,HGG\nb,HGG\nc,LGG\nd,other\n")
    out = tmp / "o"
    assert (
        _evaluate(
            "--pred",
            pred,
            "--gt",
            gt,
            "--groups",
            g3,
            "--positive-group",
            "HGG",
            "--out",
            out,
            "--surface-tolerance",
            3,
            "--n-resamples",
            999,
            "--seed",
            4,
        )
        == 0
    )
    rows = _rows(out)
    cases = _cases()
    for (case, c), r in rows.items():
        ref, prd = cases[case]
        want = surface_metrics(prd[None], ref[None], SPACING, tolerance=3.0, num_classes=3, include_background=False)
        for key, arr in (("HD95_mm", want.hd95), ("NSD", want.nsd)):
            got, w = float(r[key]), arr[0, c - 1].item()
            assert (math.isnan(got) and math.isnan(w)) or got == pytest.approx(w, rel=1e-9, abs=1e-12), (case, c, key)
    # d, class 1: the prediction is empty, the reference is not: worst case under every convention
    assert float(rows["d", 1]["NSD"]) == 0.0
    assert float(rows["d", 1]["HD95_mm"]) == pytest.approx(math.sqrt((3 * 2) ** 2 + (4 * 2) ** 2 + (5 * 3) ** 2))
    head, table = _summary_rows((out / "summary.md").read_text())
    assert head[6:9] == ["DSC 95 % CI", "ΔV ml mean ± std", "ΔV 95 % CI"]
    assert head[-2:] == ["HD95 mm mean [95 % CI]", "NSD@3 mm mean [95 % CI]"]

    def ci(v):
        r = stats.bootstrap(
            (np.asarray(v),), np.mean, method="percentile", n_resamples=999, rng=np.random.default_rng(4)
        ).confidence_interval
        return f"[{r.low:.3f}, {r.high:.3f}]"

    assert table["2", "all"]["DSC 95 % CI"] == ci([10 / 11, 6 / 9])  # c and d undefined (empty references)
    assert table["1", "all"]["DSC 95 % CI"] == ci([0.8, 1.0, 1.0, 0.0])
    assert table["1", "HGG"]["ΔV 95 % CI"] == ci([0.0, 0.0]) == "[0.000, 0.000]"
    assert table["2", "all"]["ΔV 95 % CI"] == ci(np.array([1, -3, 3, 0]) * ML)
    assert table["1", "other"]["DSC 95 % CI"] == "n < 2" and table["1", "LGG"]["DSC 95 % CI"] == "n < 2"
    assert table["2", "LGG"]["DSC 95 % CI"] == "–"  # nothing defined
    hd_all = [float(rows[k, 1]["HD95_mm"]) for k in "abcd"]
    r = stats.bootstrap(
        (np.asarray(hd_all),), np.mean, method="percentile", n_resamples=999, rng=np.random.default_rng(4)
    ).confidence_interval
    assert table["1", "all"]["HD95 mm mean [95 % CI]"] == f"{np.mean(hd_all):.2f} [{r.low:.2f}, {r.high:.2f}]"
    assert table["2", "all"]["NSD@3 mm mean [95 % CI]"].endswith(" n=2")  # 2 of 4 cases defined
    assert table["1", "other"]["NSD@3 mm mean [95 % CI]"] == "0.000 (n=1)"


def test_surface_tolerance_must_be_a_distance(folders, capsys):
    tmp, pred, gt, _ = folders
    assert _evaluate("--pred", pred, "--gt", gt, "--out", tmp / "o", "--surface-tolerance", -1) == 2
    assert "--surface-tolerance must be a finite distance" in _err(capsys)
    assert not (tmp / "o").exists()
