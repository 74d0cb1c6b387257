"""Smoke grid: every code path of reproduce (both tasks, all configs, report, plots), resume, numbers vs numpy."""

import json
import os

import numpy as np
import pytest

from phidice.experiments import grid as grid_mod
from phidice.experiments import reproduce
from phidice.experiments.data import make_dataset
from phidice.experiments.run import PRESETS, build_experiments


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("smoke"))
    path = reproduce(out, preset="smoke", threads=1, progress=False, log=lambda *a: None)
    return out, path


def test_smoke_grid_writes_every_output(smoke):
    out, path = smoke
    assert path == os.path.join(out, "report.md")
    for name in ("report.md", "results.json", "roc.png", "examples.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    exps, _ = build_experiments(PRESETS["smoke"])
    keys = {r.key for e in exps for r in e.runs}
    assert len(keys) == 3 * 2 * 2 + 8  # binary I/BI/I_ε × B{1,2} × full/partial + multiclass 3 full + 5 partial
    for k in keys:
        assert os.path.exists(os.path.join(out, "checkpoints", f"{k}.pt"))
        assert os.path.exists(os.path.join(out, "runs", f"{k}.json"))
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".tmp-")]  # atomic writes left no temp
    report = open(path).read()
    assert "| full | 1 |" in report and "| partial | 2 |" in report and "Pattern reproduced?" in report
    assert "leaf" in report and "marginal" in report and "(0.24)" in report  # paper's BI B=2 LGG DSC beside ours


def test_results_json_holds_every_table_number(smoke):
    out, _ = smoke
    res = json.load(open(os.path.join(out, "results.json")))
    rows = res["rows"]
    assert {r["task"] for r in rows} == {"binary", "multiclass"}
    assert {r["config"] for r in rows if r["task"] == "multiclass"} == {"I", "BI", "I_eps", "leaf", "marginal"}
    for r in rows:
        assert set(r) >= {"config", "batch_size", "labelling", "group", "dsc", "dv_ml", "pred_ml", "auc"}
        assert r["dv_ml"] == pytest.approx(r["pred_ml"] - r["ref_ml"])
    assert all(isinstance(c["ok"], bool) for c in res["checks"]) and res["checks"]


def test_report_carries_intervals_and_significance(smoke):
    """The tiny validation set still gets intervals and tests (or "n < 2"), never a crash; the LGG interval of a run
    equals the bootstrap of its per-image DSC recomputed here."""
    stats = pytest.importorskip("scipy.stats")
    out, path = smoke
    report = open(path).read()
    assert "| significant |" in report and "tested differences are significant" in report
    res = json.load(open(os.path.join(out, "results.json")))
    tests = [c["test"] for c in res["checks"]]
    assert all(set(t) >= {"p_value", "significant", "difference", "n"} for t in tests)
    assert any(t["p_value"] is not None for t in tests)
    for t in tests:
        assert t["p_value"] is None or (0 < t["p_value"] <= 1 and t["significant"] == (t["p_value"] < 0.05))
    run = json.load(open(os.path.join(out, "runs", "binary_I_B1_partial.json")))
    dsc = np.array([np.nan if v[0] is None else v[0] for v in run["per_image"]["dsc"]])
    lgg = dsc[np.array(run["per_image"]["group"]) == "lgg"]
    lgg = lgg[~np.isnan(lgg)]
    row = next(
        r
        for r in res["rows"]
        if r["task"] == "binary"
        and r["config"] == "I"
        and r["batch_size"] == 1
        and r["labelling"] == "partial"
        and r["group"] == "lgg"
    )
    if np.ptp(lgg) > 0:
        ci = stats.bootstrap(
            (lgg,), np.mean, method="percentile", n_resamples=10_000, rng=np.random.default_rng(0)
        ).confidence_interval
        assert row["dsc_ci"] == pytest.approx([ci.low, ci.high], abs=1e-12)
        assert f"[{ci.low:.2f}, {ci.high:.2f}]" in report
    else:
        assert row["dsc_ci"] == pytest.approx([lgg[0], lgg[0]])


def test_numbers_match_an_independent_numpy_evaluation(smoke):
    """DSC, ΔV and AUC of a run, recomputed with numpy from the saved predictions and regenerated labels."""
    out, _ = smoke
    p = PRESETS["smoke"]
    val = make_dataset("binary", n=p.n_val, size=p.size, seed=1000, minority=0.5)
    for key in ("binary_I_B1_partial", "binary_BI_B2_partial"):
        run = json.load(open(os.path.join(out, "runs", f"{key}.json")))
        pred = np.load(os.path.join(out, "preds", f"{key}.npz"))["pred"].astype(np.int64)
        y = val.labels
        inter, s = (pred * y).sum((1, 2)), pred.sum((1, 2)) + y.sum((1, 2))
        dsc = 2 * inter / s  # every validation image holds a lesion
        voxel_ml = np.prod(val.spacing) / 1000
        dv = (pred.sum((1, 2)) - y.sum((1, 2))) * voxel_ml
        for g in ("hgg", "lgg"):
            rows = val.groups == g
            assert run["groups"][g]["dsc"][0] == pytest.approx(dsc[rows].mean())
            assert run["groups"][g]["dv_ml"][0] == pytest.approx(dv[rows].mean())
        vol = pred.sum((1, 2)).astype(float)
        pos, neg = vol[val.groups == "hgg"], vol[val.groups == "lgg"]
        auc = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
        assert run["roc"]["auc"] == pytest.approx(auc)


def test_interrupted_grid_resumes(tmp_path, monkeypatch):
    out = str(tmp_path)
    calls, stop = [], [True]
    real = grid_mod.run_one

    def flaky(exp, run, settings, o):
        calls.append(run.key)
        if stop[0] and len(calls) == 3:
            raise _Stop  # the user stops the grid during the third run
        return real(exp, run, settings, o)

    monkeypatch.setattr(grid_mod, "run_one", flaky)
    with pytest.raises(_Stop):
        reproduce(out, preset="smoke", tasks=("binary",), threads=1, progress=False, log=lambda *a: None)
    done = sorted(os.listdir(os.path.join(out, "runs")))
    assert len(done) == 2 and not os.path.exists(os.path.join(out, "report.md"))
    stamps = {f: os.path.getmtime(os.path.join(out, "runs", f)) for f in done}
    calls.clear()
    stop[0] = False
    messages = []
    reproduce(out, preset="smoke", tasks=("binary",), threads=1, progress=False, log=messages.append)
    assert len(calls) == 12 - 2 and not set(calls) & {f[:-5] for f in done}
    assert any("resuming: 2 of 12" in m for m in messages)
    assert {f: os.path.getmtime(os.path.join(out, "runs", f)) for f in done} == stamps
    assert len(os.listdir(os.path.join(out, "runs"))) == 12
    calls.clear()
    reproduce(out, preset="smoke", tasks=("binary",), threads=1, progress=False, log=lambda *a: None)
    assert calls == []  # a finished grid only rewrites the report
    with pytest.raises(ValueError, match="other settings"):  # never mix runs of different training lengths
        reproduce(out, preset="smoke", tasks=("binary",), images=9, threads=1, progress=False, log=lambda *a: None)


def test_reproduce_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        reproduce(str(tmp_path), preset="huge")
    with pytest.raises(ValueError, match="iterations"):
        reproduce(str(tmp_path), preset="smoke", iterations=0)
    with pytest.raises(ValueError, match="tasks"):
        reproduce(str(tmp_path), preset="smoke", tasks=("other",), progress=False)


def test_parallel_grid_equals_the_sequential_one(smoke, tmp_path):
    """threads=2 trains two runs at a time, one process and one torch thread each: the same runs, the same
    numbers as one after the other with one thread (float32 rounding aside), every output, no worker files."""
    out, _ = smoke
    messages = []
    path = reproduce(str(tmp_path), preset="smoke", threads=2, progress=False, log=messages.append)
    assert any("2 at a time" in m for m in messages)
    assert os.path.exists(path) and not os.path.exists(tmp_path / ".workers")
    seq = sorted(os.listdir(os.path.join(out, "runs")))
    assert sorted(os.listdir(tmp_path / "runs")) == seq
    for name in seq:
        a = json.loads(open(os.path.join(out, "runs", name)).read())
        b = json.loads((tmp_path / "runs" / name).read_text())
        assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-5), name
        assert np.allclose(
            np.asarray(b["per_image"]["pred_ml"], float),
            np.asarray(a["per_image"]["pred_ml"], float),
            rtol=1e-4,
            atol=1e-6,
        ), name
    assert "jobs=2" in open(path).read()


def test_a_failing_worker_stops_the_grid_with_its_log(tmp_path):
    exps, _ = build_experiments(PRESETS["smoke"], tasks=("binary",))
    bad = grid_mod.GridSettings(images=2, device="nosuchdevice", progress=False)
    with pytest.raises(RuntimeError, match=r"grid worker \d failed .*(?s:.*)nosuchdevice"):
        grid_mod.run_grid(exps, bad, str(tmp_path), log=lambda *a: None, jobs=2)
    assert not (tmp_path / ".workers").exists()  # job files and logs go with the workers
    with pytest.raises(ValueError, match="jobs must be an integer ≥ 1"):
        reproduce(str(tmp_path), preset="smoke", jobs=0)


def test_partial_runs_record_the_monitor_per_epoch(smoke):
    """The partial-labelling runs of I, BI and I_ε carry one GradientMonitor record per epoch; the report plots
    them and checks the monitor claims."""
    out, path = smoke
    for name in ("binary_I_B2_partial", "binary_BI_B2_partial", "binary_I_eps_B1_partial"):
        run = json.load(open(os.path.join(out, "runs", f"{name}.json")))
        assert len(run["monitor"]) == 1  # the smoke runs are shorter than one epoch: one (partial) record
        record = run["monitor"][0]
        assert record["updates"] == run["iterations"] and 0 <= record["per_class"]["0"]["empty_subset_fraction"] <= 1
    assert "monitor" not in json.load(open(os.path.join(out, "runs", "binary_I_B2_full.json")))
    assert os.path.getsize(os.path.join(out, "monitor.png")) > 0
    assert "predicted volume on empty maps towards 0" in open(path).read()
