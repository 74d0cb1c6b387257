"""The pattern checks on hand-made results: they say yes when the paper's pattern holds and no when it does not."""

import pytest

from phidice.experiments.report import check_pattern, rows_for_json


def _run(config, B, labelling, lgg_dsc, lgg_dv=-1.0, auc=0.6, hgg_dsc=0.9, ref=10.0):
    key = f"binary_{config}_B{B}_{labelling}"
    groups = {
        "hgg": {"n": 4, "dsc": [hgg_dsc], "dv_ml": [0.0], "pred_ml": [ref], "ref_ml": [ref]},
        "lgg": {"n": 4, "dsc": [lgg_dsc], "dv_ml": [lgg_dv], "pred_ml": [ref + lgg_dv], "ref_ml": [ref]},
    }
    return key, {"key": key, "task": "binary", "config": config, "batch_size": B, "labelling": labelling,
                 "class_names": ["lesion"], "missing_group": "lgg", "missing_class": 1, "groups": groups,
                 "roc": {"auc": auc}, "eps": None, "train_seconds": 1.0}


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


@pytest.mark.parametrize("kw, failing", [
    (dict(partial_bi2=0.5), {"binary: BI (B=2) partial drops the lgg DSC below 0.3"}),
    (dict(partial_i=0.7), {"binary: I (B=1) partial keeps the lgg DSC within 0.1 of full labelling",
                           "binary: I (B=2) partial keeps the lgg DSC within 0.1 of full labelling"}),
    (dict(full_eps=0.8), {"binary: full labelling (B=1), the configs agree on the lgg DSC within 0.05",
                          "binary: full labelling (B=2), the configs agree on the lgg DSC within 0.05"}),
    (dict(bi2_dv=-5.0), {"binary: BI (B=2) partial: lgg ΔV ≤ −0.7·V̄ (near minus the mean volume)"}),
    (dict(bi2_auc=0.85), {"binary: BI (B=2) partial: volume-based detection AUC ≥ 0.9"}),
])
def test_each_claim_can_fail(kw, failing):
    bad = {c["claim"] for c in check_pattern(_grid(**kw)) if not c["ok"]}
    assert bad == failing


def test_rows_hold_auc_only_for_the_scored_class():
    rows = rows_for_json(_grid())
    assert len(rows) == 12 * 2
    assert all(r["auc"] is not None for r in rows)
    assert {r["group"] for r in rows} == {"hgg", "lgg"}
