"""The pooled reproduction: the two sources, their merge, the checks and the report (training: --runslow)."""

import json

import numpy as np
import pytest

from phidice.experiments.data import make_dataset
from phidice.experiments.pooled import POOL_RUNS, check_pooled, dice_per_class, make_pool, reproduce_pooled


def test_pool_splits_merges_and_annotates():
    train = make_dataset("multiclass", n=12, size=16, seed=2)
    pool = make_pool(train, seed=0)
    assert pool.plan.names == ["background", "Rim", "edema", "core"]
    data_of = {"core": 1, "rim": 2, "edema": 3}
    for v, name in enumerate(pool.plan.names[1:], start=1):
        assert ((pool.full_labels == v) == (train.labels == data_of[name.lower()])).all()
    b, a = pool.source == 0, pool.source == 1
    assert b.sum() == a.sum() == 6
    assert pool.annotated[b].tolist() == [[True, True, True, False]] * 6  # B: Rim, edema
    assert pool.annotated[a].tolist() == [[True, True, False, True]] * 6  # A: core, rim
    # the pool's maps: each source's own labels, its missing structure as background
    assert not (pool.labels[b] == 3).any() and not (pool.labels[a] == 2).any()
    keep = pool.annotated[np.arange(len(train))[:, None, None], pool.full_labels]
    assert (pool.labels == np.where(keep, pool.full_labels, 0)).all()


def test_dice_per_class_and_checks():
    masks = np.zeros((2, 3, 2, 2), bool)
    labels = np.array([[[1, 1], [0, 2]], [[0, 0], [0, 0]]])
    masks[0, 1, 0, 0] = True  # class 1: I 1, P 1, Y 2 -> 2/3; class 2: missed -> 0
    d = dice_per_class(masks, labels)
    assert d[0].tolist() == [pytest.approx(2 / 3), 0.0] and np.isnan(d[1]).all()
    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.9, (30, 3))
    runs = {n: {"dsc": base.tolist()} for n in POOL_RUNS}
    worse = base.copy()
    worse[:, [1, 2]] -= 0.2  # the naive pool loses edema and core
    runs["naive"] = {"dsc": worse.tolist()}
    checks = {c["claim"]: c["ok"] for c in check_pooled(runs, ["Rim", "edema", "core"])}
    assert all(ok for claim, ok in checks.items())
    assert "naive significantly worse than full on core (B lacks it)" in checks
    runs["leaf"] = {"dsc": (base - 0.1).tolist()}
    assert not {c["claim"]: c["ok"] for c in check_pooled(runs, ["Rim", "edema", "core"])}["leaf close to full on Rim"]


@pytest.mark.slow
def test_smoke_run_and_resume(tmp_path):
    path = reproduce_pooled(str(tmp_path), preset="smoke", progress=False, log=lambda *a: None)
    text = open(path).read()
    assert "| naive | pool, naive (unannotated = 0) |" in text and "## Checks" in text
    results = json.loads((tmp_path / "pooled_results.json").read_text())
    assert set(results["runs"]) == set(POOL_RUNS)
    before = (tmp_path / "pooled" / "runs" / "leaf.json").stat().st_mtime_ns
    reproduce_pooled(str(tmp_path), preset="smoke", progress=False, log=lambda *a: None)
    assert (tmp_path / "pooled" / "runs" / "leaf.json").stat().st_mtime_ns == before  # resumed, not retrained
