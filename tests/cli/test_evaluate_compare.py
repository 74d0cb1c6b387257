"""``phidice evaluate --pred A B C``: three methods, two groups, NIfTI folders written here, anisotropic voxels.

Every cell of compare.md is recomputed independently: per-case DSC and ΔV with numpy from the arrays written,
HD95/NSD with ``phidice.metrics.surface_metrics`` (checked against MONAI in tests/metrics/test_surface.py) on the
in-memory arrays, intervals with ``scipy.stats.bootstrap`` and p-values with ``scipy.stats.permutation_test`` on
the same seed. 12 cases: the "all" rows draw 2000 random sign patterns (2¹² > 2000), the 6-case groups enumerate
all 64.
"""

import csv
import math
import sys

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")
stats = pytest.importorskip("scipy.stats")

from phidice.cli.main import main
from phidice.metrics import surface_metrics

SHAPE = (9, 8, 6)
SPACING = (1.5, 1.0, 2.5)
ML = 1.5 * 1.0 * 2.5 / 1000
METHODS = ("A", "B", "C")
TAU = 2.0
SEED, R = 3, 2000


def _case(i, rng):
    """Reference and the three predictions of case i. Class 1 everywhere; class 2 only in HGG (cases 0–5).
    A and B: the reference with a few random voxels changed (noise); C: class 2 shrunk by one slab in HGG and a
    false-positive class-2 blob in LGG (larger than HGG's class 2 in every other case), so C differs from A for
    real."""
    hgg = i < 6
    ref = np.zeros(SHAPE, np.int16)
    ref[1 : 5 + i % 3, 1:6, 1:4] = 1
    if hgg:
        ref[5:8, 2 : 6 - i % 2, 2:5] = 2
    preds = {}
    for m, k in (("A", 4), ("B", 5)):
        p = ref.copy().reshape(-1)
        idx = rng.choice(p.size, k, replace=False)
        p[idx] = rng.integers(0, 3, k)
        preds[m] = p.reshape(SHAPE)
    c = ref.copy()
    if hgg:
        c[7, :, :][c[7, :, :] == 2] = 0
    else:
        c[5:8, 1:7, 3:6] = 0
        c[(slice(5, 8), slice(1, 7), slice(3, 6)) if i % 2 == 0 else (slice(6, 8), slice(5, 7), slice(4, 5))] = 2
    preds["C"] = c
    return ref, preds


def _save(path, arr):
    nib.save(nib.Nifti1Image(arr, np.diag([*SPACING, 1.0])), str(path))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    folders = {m: tmp / f"method_{m}" for m in METHODS}
    gt = tmp / "gt"
    for f in (gt, *folders.values()):
        f.mkdir()
    arrays, groups = {}, {}
    for i in range(12):
        name = f"case{i:02d}"
        ref, preds = _case(i, rng)
        _save(gt / f"{name}.nii.gz", ref)
        for m in METHODS:
            _save(folders[m] / f"{name}.nii.gz", preds[m])
        arrays[name] = (ref, preds)
        groups[name] = "HGG" if i < 6 else "LGG"
    csv_path = tmp / "groups.csv"
    csv_path.write_text("case,group\n" + "".join(f"{c},{g}\n" for c, g in groups.items()))
    return tmp, gt, folders, csv_path, arrays, groups


def _run(data, out, *extra):
    tmp, gt, folders, groups_csv, _, _ = data
    return main(
        [
            "evaluate",
            "--gt",
            str(gt),
            "--pred",
            *(str(folders[m]) for m in METHODS),
            "--method-names",
            *METHODS,
            "--groups",
            str(groups_csv),
            "--surface-tolerance",
            str(TAU),
            "--n-resamples",
            str(R),
            "--seed",
            str(SEED),
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def _expected_per_case(arrays):
    """{(method, case, class): {DSC, dV_ml, HD95_mm, NSD}} from numpy and surface_metrics."""
    out = {}
    for case, (ref, preds) in arrays.items():
        for m in METHODS:
            p = preds[m]
            surf = surface_metrics(p[None], ref[None], SPACING, tolerance=TAU, num_classes=3, include_background=False)
            for c in (1, 2):
                y, x = ref == c, p == c
                dsc = 2 * (x & y).sum() / (x.sum() + y.sum()) if y.any() else math.nan
                out[m, case, c] = {
                    "DSC": dsc,
                    "dV_ml": (int(x.sum()) - int(y.sum())) * ML,
                    "HD95_mm": surf.hd95[0, c - 1].item(),
                    "NSD": surf.nsd[0, c - 1].item(),
                }
    return out


def _cell(values, spec):
    v = values[~np.isnan(values)]
    if v.size == 0:
        return "–", None
    if v.size == 1:
        return f"{v[0]:{spec}} (n=1)", None
    if np.all(v == v[0]):
        lo = hi = v.mean()
    else:
        ci = stats.bootstrap(
            (v,), np.mean, method="percentile", n_resamples=R, rng=np.random.default_rng(SEED)
        ).confidence_interval
        lo, hi = ci.low, ci.high
    n = f" n={v.size}" if v.size < values.size else ""
    return f"{v.mean():{spec}} [{lo:{spec}}, {hi:{spec}}]{n}", (lo, hi)


def _p(a, b):
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 2:
        return "n < 2", None
    res = stats.permutation_test(
        (a[keep], b[keep]),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=R,
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    return f"{res.pvalue:.3g}" + ("*" if res.pvalue < 0.05 else ""), res.pvalue


def _table(md):
    rows = {}
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    for ln in lines[1:]:
        cells = [x.strip() for x in ln.strip("|").split("|")]
        if len(cells) == len(head):
            rows[cells[0], cells[1], cells[2]] = dict(zip(head, cells))
    return head, rows


SPECS = {"DSC": ".3f", "dV_ml": ".3f", "HD95_mm": ".2f", "NSD": ".3f"}
TITLES = {
    "DSC": ("DSC mean [95 % CI]", "p DSC"),
    "dV_ml": ("ΔV ml mean [95 % CI]", "p ΔV ml"),
    "HD95_mm": ("HD95 mm mean [95 % CI]", "p HD95 mm"),
    "NSD": ("NSD@2 mm mean [95 % CI]", "p NSD"),
}


def test_compare_table_cell_by_cell(data, tmp_path, capsys):
    _, _, folders, _, arrays, groups = data
    out = tmp_path / "out"
    assert _run(data, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.md", "per_case.csv", "roc.csv", "roc.png"]
    md = (out / "compare.md").read_text()
    assert md in capsys.readouterr().out
    head, table = _table(md)
    assert head == ["class", "group", "method", "cases"] + [t for k in SPECS for t in TITLES[k]]
    expected = _expected_per_case(arrays)
    cases = sorted(arrays)
    sets = {"all": cases, "HGG": cases[:6], "LGG": cases[6:]}
    with open(out / "compare.csv", newline="") as f:
        long = {(r["class"], r["group"], r["method"], r["metric"]): r for r in csv.DictReader(f)}
    checked = significant = 0
    for c in (1, 2):
        for g, members in sets.items():
            for m in METHODS:
                row = table[str(c), g, m]
                assert row["cases"] == str(len(members))
                for key, spec in SPECS.items():
                    vals = np.array([expected[m, k, c][key] for k in members])
                    base = np.array([expected["A", k, c][key] for k in members])
                    cell, ci = _cell(vals, spec)
                    assert row[TITLES[key][0]] == cell, (c, g, m, key)
                    p_text, p = ("baseline", None) if m == "A" else _p(vals, base)
                    assert row[TITLES[key][1]] == p_text, (c, g, m, key)
                    r = long[str(c), g, m, key]
                    if ci is not None:  # the CSV holds 10 significant digits
                        assert (float(r["ci_low"]), float(r["ci_high"])) == pytest.approx(ci, rel=1e-9, abs=1e-12)
                    if p is not None:
                        assert float(r["p_value"]) == pytest.approx(p, rel=1e-9)
                        significant += p < 0.05
                    checked += 1
    assert checked == 2 * 3 * 3 * 4
    # the data hold both kinds of differences: C's shrunk class 2 is significant, not every noise difference is
    assert table["2", "HGG", "C"]["p DSC"].endswith("*") and not table["1", "all", "B"]["p ΔV ml"].endswith("*")
    assert 0 < significant < 48
    assert table["2", "LGG", "A"]["DSC mean [95 % CI]"] == "–"  # empty references: undefined under empty="nan"
    assert table["2", "LGG", "B"]["p DSC"] == "n < 2"

    with open(out / "per_case.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 12 * 2 and list(rows[0])[:3] == ["method", "case", "class"]
    for r in rows:
        want = expected[r["method"], r["case"], int(r["class"])]
        assert r["group"] == groups[r["case"]]
        for key in SPECS:
            got = float(r[key])
            assert (math.isnan(got) and math.isnan(want[key])) or got == pytest.approx(want[key], rel=1e-9, abs=1e-12)

    with open(out / "roc.csv", newline="") as f:
        auc = {(r["method"], int(r["class"])): float(r["auc"]) for r in csv.DictReader(f)}
    for (
        m
    ) in METHODS:  # Mann–Whitney AUC of HGG (positive: larger reference volume) from the predicted volume of class 2
        vol = np.array([(arrays[k][1][m] == 2).sum() for k in cases], float)
        pos, neg = vol[:6], vol[6:]
        want = ((pos[:, None] > neg).sum() + 0.5 * (pos[:, None] == neg).sum()) / 36
        assert auc[m, 2] == pytest.approx(want)
        assert f"| 2 | {m} | 6 | 6 | {want:.3f} |" in md
    assert auc["C", 2] < auc["A", 2]  # C's false positives on LGG make the groups harder to tell apart
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baseline_and_bootstrap_test(data, tmp_path):
    out = tmp_path / "o"
    assert _run(data, out, "--baseline", "C", "--test", "bootstrap") == 0
    _, table = _table((out / "compare.md").read_text())
    assert table["1", "all", "C"]["p DSC"] == "baseline" and table["1", "all", "A"]["p DSC"] != "baseline"
    with open(out / "compare.csv", newline="") as f:
        assert {r["test"] for r in csv.DictReader(f) if r["test"]} == {"bootstrap"}


def _err(capsys):
    return capsys.readouterr().err


def test_case_sets_that_differ(data, tmp_path, capsys):
    tmp, gt, folders, groups_csv, arrays, _ = data
    bad_b, bad_c = tmp_path / "B", tmp_path / "C"
    bad_b.mkdir()
    bad_c.mkdir()
    for case, (_, preds) in arrays.items():
        if case != "case03":
            _save(bad_b / f"{case}.nii.gz", preds["B"])
        _save(bad_c / f"{case}.nii.gz", preds["C"])
    _save(bad_c / "case99.nii.gz", arrays["case00"][1]["C"])
    argv = [
        "evaluate",
        "--gt",
        str(gt),
        "--pred",
        str(folders["A"]),
        str(bad_b),
        str(bad_c),
        "--groups",
        str(groups_csv),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
        "--n-resamples",
        "200",
    ]
    assert main(argv) == 2
    err = _err(capsys)
    assert f"prediction folder '{bad_b}' (method 'B') lacks 1 case(s) of the reference: case03" in err
    assert f"prediction folder '{bad_c}' (method 'C') has 1 case(s) the reference lacks: case99" in err
    assert "method_A" not in err and "--allow-missing" in err
    assert not (tmp_path / "o").exists()
    assert main(argv + ["--allow-missing"]) == 0  # the 11 cases every folder holds
    text = (tmp_path / "o" / "compare.md").read_text()
    assert "11 cases" in text and "left out (--allow-missing)" in text


def test_bad_groups_and_names(data, tmp_path, capsys):
    tmp, gt, folders, _, arrays, groups = data
    small = tmp_path / "g.csv"
    small.write_text("case,group\n" + "".join(f"{c},{'X' if c == 'case11' else g}\n" for c, g in groups.items()))
    base = [
        "evaluate",
        "--gt",
        str(gt),
        "--pred",
        *(str(folders[m]) for m in METHODS),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    assert main(base + ["--groups", str(small)]) == 2
    assert "fewer than 2 cases" in (e := _err(capsys)) and "'X': 1 case(s) (case11)" in e
    assert main(base + ["--method-names", "A", "B"]) == 2
    assert "--method-names has 2 names for 3" in _err(capsys)
    assert main(base + ["--method-names", "A", "B", "A"]) == 2
    assert "'A' repeats" in _err(capsys)
    assert main(base + ["--baseline", "D"]) == 2
    assert "--baseline 'D' is not one of the methods: method_A, method_B, method_C" in _err(capsys)
    assert (
        main(
            ["evaluate", "--gt", str(gt), "--pred", str(folders["A"]), "--baseline", "A", "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "several --pred folders" in _err(capsys)
    assert main(base + ["--confidence", "95"]) == 2
    assert "--confidence must be in (0, 1)" in _err(capsys)
    assert not (tmp_path / "o").exists()


def _block(monkeypatch, blocked):
    for name in [m for m in list(sys.modules) if m == blocked or m.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # import blocked → ImportError


def test_missing_optional_dependency_names_the_extra(data, tmp_path, capsys, monkeypatch):
    _block(monkeypatch, "matplotlib")
    assert _run(data, tmp_path / "o") == 2
    assert "needs matplotlib, which is not installed: pip install 'phidice[eval]'" in _err(capsys)
    assert not (tmp_path / "o" / "compare.md").exists()


def test_without_tqdm_there_is_no_bar_but_the_same_result(data, tmp_path, monkeypatch):
    _block(monkeypatch, "tqdm")
    assert _run(data, tmp_path / "o") == 0
    assert (tmp_path / "o" / "compare.md").exists()
