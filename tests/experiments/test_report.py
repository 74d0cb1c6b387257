"""The pattern checks on hand-made results: they say yes when the paper's pattern holds and no when it does not."""

import pytest

from phidice.experiments.report import check_pattern, rows_for_json


def _run(config, B, labelling, lgg_dsc, lgg_dv=-1.0, auc=0.6, hgg_dsc=0.9, ref=10.0):
    key = f"binary_{config}_B{B}_{labelling}"
    groups = {
        "hgg": {"n": 4, "dsc": [hgg_dsc], "dv_ml": [0.0], "pred_ml": [ref], "ref_ml": [ref]},
        "lgg": {"n": 4, "dsc": [lgg_dsc], "dv_ml": [lgg_dv], "pred_ml": [ref + lgg_dv], "ref_ml": [ref]},
    }
    return key, {
        "key": key,
        "task": "binary",
        "config": config,
        "batch_size": B,
        "labelling": labelling,
        "class_names": ["lesion"],
        "missing_group": "lgg",
        "missing_class": 1,
        "groups": groups,
        "roc": {"auc": auc},
        "eps": None,
        "train_seconds": 1.0,
    }


def _grid(partial_bi2=0.1, partial_i=0.88, full_eps=0.9, bi2_dv=-9.0, bi2_auc=0.95):
    runs = [_run(c, B, "full", 0.9 if c != "I_eps" else full_eps) for c in ("I", "BI", "I_eps") for B in (1, 2)]
    runs += [_run("I", B, "partial", partial_i) for B in (1, 2)]
    runs += [_run("BI", 1, "partial", 0.89)]
    runs += [_run("BI", 2, "partial", partial_bi2, bi2_dv, bi2_auc)]
    runs += [_run("I_eps", B, "partial", 0.05, -9.5, 0.97) for B in (1, 2)]
    return dict(runs)


def test_pattern_holds():
    checks = check_pattern(_grid())
    assert checks and all(c["ok"] for c in checks)
    claims = " ".join(c["claim"] for c in checks)
    assert "I (B=1) partial keeps" in claims and "BI (B=2) partial drops" in claims and "I_ε (B=1)" in claims


@pytest.mark.parametrize(
    "kw, failing",
    [
        (dict(partial_bi2=0.5), {"binary: BI (B=2) partial drops the lgg DSC below 0.3"}),
        (
            dict(partial_i=0.7),
            {
                "binary: I (B=1) partial keeps the lgg DSC within 0.1 of full labelling",
                "binary: I (B=2) partial keeps the lgg DSC within 0.1 of full labelling",
            },
        ),
        (
            dict(full_eps=0.8),
            {
                "binary: full labelling (B=1), the configs agree on the lgg DSC within 0.05",
                "binary: full labelling (B=2), the configs agree on the lgg DSC within 0.05",
            },
        ),
        (dict(bi2_dv=-5.0), {"binary: BI (B=2) partial: lgg ΔV ≤ −0.7·V̄ (near minus the mean volume)"}),
        (dict(bi2_auc=0.85), {"binary: BI (B=2) partial: volume-based detection AUC ≥ 0.9"}),
    ],
)
def test_each_claim_can_fail(kw, failing):
    bad = {c["claim"] for c in check_pattern(_grid(**kw)) if not c["ok"]}
    assert bad == failing


def test_rows_hold_auc_only_for_the_scored_class():
    rows = rows_for_json(_grid())
    assert len(rows) == 12 * 2
    assert all(r["auc"] is not None for r in rows)
    assert {r["group"] for r in rows} == {"hgg", "lgg"}


# ------------------------------------------------------------------ intervals and significance (per-image numbers)

stats = pytest.importorskip("scipy.stats")

import numpy as np

from phidice.experiments.report import write_report

N_IMG = 10  # validation images per group


def _with_images(run, hgg, lgg, ref=10.0):
    """Attach per-image DSC / volumes (hgg, lgg: per-image DSC arrays) and set the group means from them."""
    key, r = run
    r["roc"].update(fpr=[0.0, 0.0, 1.0], tpr=[0.0, 1.0, 1.0])  # roc.png needs points; the checks use the AUC
    groups = ["hgg"] * len(hgg) + ["lgg"] * len(lgg)
    dsc = np.r_[hgg, lgg]
    pred = ref * dsc  # a predicted volume that shrinks with the DSC
    r["per_image"] = {
        "group": groups,
        "dsc": [[None if np.isnan(v) else float(v)] for v in dsc],
        "pred_ml": [[float(v)] for v in pred],
        "ref_ml": [[ref]] * len(dsc),
    }
    for g, sel in (("hgg", slice(0, len(hgg))), ("lgg", slice(len(hgg), None))):
        d = dsc[sel]
        r["groups"][g].update(
            n=int(d.size),
            dsc=[float(np.nanmean(d)) if np.isfinite(d).any() else None],
            dv_ml=[float((pred[sel] - ref).mean())],
            pred_ml=[float(pred[sel].mean())],
            ref_ml=[ref],
        )
    return key, r


def _image_grid(noise_only=True, n=N_IMG):
    rng = np.random.default_rng(5)
    base = rng.beta(9, 1.5, size=(2, n))
    full = dict(_with_images(_run(c, 1, "full", 0.9), base[0], base[1]) for c in ("I", "BI"))
    noise = rng.normal(0, 0.01, n)
    i_partial = base[1] + noise - noise.mean() - (0 if noise_only else 0.05)  # noise with a mean of exactly 0
    bi2_full = _with_images(_run("BI", 2, "full", 0.9), base[0], base[1])
    bi2_partial = _with_images(_run("BI", 2, "partial", 0.1, auc=0.95), base[0], 0.1 + rng.normal(0, 0.02, n))
    runs = [_with_images(_run("I", 1, "partial", 0.9), base[0], i_partial), bi2_full, bi2_partial]
    return {**full, **dict(runs)}


def _mean_diff(a, b, axis=-1):
    return np.mean(a - b, axis=axis)


def _check(checks, start):
    return next(c for c in checks if c["claim"].startswith(start))


@pytest.mark.parametrize("noise_only", [True, False])
def test_claims_say_whether_the_difference_is_significant(noise_only):
    results = _image_grid(noise_only)
    checks = check_pattern(results)
    keep = _check(checks, "binary: I (B=1) partial keeps")
    part = np.array([v[0] for v in results["binary_I_B1_partial"]["per_image"]["dsc"]])[N_IMG:]
    full = np.array([v[0] for v in results["binary_I_B1_full"]["per_image"]["dsc"]])[N_IMG:]
    ref = stats.permutation_test(
        (part, full),
        _mean_diff,
        permutation_type="samples",
        n_resamples=10_000,
        rng=np.random.default_rng(0),
        vectorized=True,
    )  # 2¹⁰ patterns: exact in both
    assert keep["test"]["p_value"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert keep["test"]["difference"] == pytest.approx((part - full).mean())
    assert keep["test"]["n"] == N_IMG and keep["test"]["comparison"] == "DSC partial − full I"
    # noise only: reproduced and not significant (the paper's "no significant difference"); a 0.05 drop: still
    # within 0.10, but significant
    assert keep["ok"] and keep["test"]["significant"] is (not noise_only)
    assert keep["test"]["p_value"] > 0.5 if noise_only else keep["test"]["p_value"] < 0.01
    drop = _check(checks, "binary: BI (B=2) partial drops")
    assert drop["ok"] and drop["test"]["significant"] and drop["test"]["p_value"] == pytest.approx(2 / 2**N_IMG)
    assert _check(checks, "binary: BI (B=2) partial: volume-based")["test"]["note"] == "AUC is not a per-image mean"


def test_report_tables_carry_intervals(tmp_path):
    results = _image_grid()
    path = write_report(results, str(tmp_path))
    md = open(path).read()
    lgg = np.array([v[0] for v in results["binary_BI_B2_partial"]["per_image"]["dsc"]])[N_IMG:]
    ci = stats.bootstrap(
        (lgg,), np.mean, method="percentile", n_resamples=10_000, rng=np.random.default_rng(0)
    ).confidence_interval
    assert f"{lgg.mean():.2f} [{ci.low:.2f}, {ci.high:.2f}] (0.24)" in md  # ours [CI] (paper) for BI B=2 LGG DSC
    assert "| significant |" in md and "tested differences are significant" in md
    rows = __import__("json").load(open(tmp_path / "results.json"))["rows"]
    row = next(
        r
        for r in rows
        if r["config"] == "BI" and r["batch_size"] == 2 and r["labelling"] == "partial" and r["group"] == "lgg"
    )
    assert row["dsc_ci"] == pytest.approx([ci.low, ci.high], abs=1e-12)


def test_tiny_grid_renders_with_n_too_small(tmp_path):
    """One validation image per group (and runs without per-image numbers): no interval, no test, no crash."""
    results = _image_grid(n=1)
    key, eps = _run("I_eps", 2, "partial", 0.05, -9.5, 0.97)  # saved without per_image
    eps["roc"].update(fpr=[0.0, 1.0], tpr=[0.0, 1.0])
    results[key] = eps
    path = write_report(results, str(tmp_path))
    md = open(path).read()
    assert "[n < 2]" in md
    checks = check_pattern(results)
    keep = _check(checks, "binary: I (B=1) partial keeps")
    assert keep["test"]["p_value"] is None and keep["test"]["note"] == "n < 2"
    eps = _check(checks, "binary: I_ε (B=2) partial drops")
    assert eps["test"]["note"] == "no full-labelling run"
    assert "| n < 2 | – | n/a |" in md


def test_different_validation_images_are_not_paired():
    results = _image_grid()
    results["binary_I_B1_full"]["per_image"]["group"] = ["lgg"] * N_IMG + ["hgg"] * N_IMG
    keep = _check(check_pattern(results), "binary: I (B=1) partial keeps")
    assert keep["test"]["note"] == "different validation images" and keep["test"]["significant"] is None
