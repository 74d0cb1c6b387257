"""sync_batch=True under DDP (2 gloo processes on CPU, uneven 3 + 1 split) equals one process on the full batch.

All cases run inside one 2-process launch (module fixture); each case is then checked here against a
single-process run on the concatenated batch: the loss value on every rank and the DDP-averaged
parameter gradients on every rank, to 1e-6 in float64.
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch

import phidice
import phidice.distributed as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cases

from _children import run_ranks

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ddp_worker.py")
WORLD = 2
TOL = 1e-6


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    outdir = tmp_path_factory.mktemp("ddp")
    run_ranks(WORKER, WORLD, outdir, timeout=120)
    return [torch.load(outdir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def reference():
    """One process, full batch, sync_batch=False: value and gradients of every case."""
    data, model = _cases.make_data(), _cases.make_model()
    return {name: _cases.run_case(model, fn, data, sync=False) for name, fn in _cases.cases().items()}


@pytest.mark.parametrize("name", list(_cases.cases()))
def test_ddp_matches_single_process(name, ddp_results, reference):
    ref_value, ref_grads = reference[name]
    for r, res in enumerate(ddp_results):
        got = res.get(name)
        assert got is not None, f"rank {r} did not run {name!r} (an earlier case failed?)"
        assert not isinstance(got, str), f"rank {r} raised in {name!r}:\n{got}"
        value, grads = got
        assert value.shape == ref_value.shape, f"rank {r}: value shape {tuple(value.shape)}"
        torch.testing.assert_close(value, ref_value, atol=TOL, rtol=0, msg=lambda m: f"rank {r} value: {m}")
        for g, rg in zip(grads, ref_grads):
            torch.testing.assert_close(g, rg, atol=TOL, rtol=0, msg=lambda m: f"rank {r} grad: {m}")


def test_per_rank_batch_dice_differs(reference):
    """The check above can fail: per-rank BI Dice (no sync) has other values and gradients."""
    data, model = _cases.make_data(), _cases.make_model()
    fn = _cases.cases()["BI-reference"]
    lo, hi = _cases.SPLITS[1]
    local_value, _ = _cases.run_case(model, fn, {k: v[lo:hi] for k, v in data.items()}, sync=False)
    assert abs(float(local_value) - float(reference["BI-reference"][0])) > 1e-2


def test_all_reduce_sum_and_world(ddp_results):
    expected = torch.tensor([3.0, 30.0], dtype=torch.float64)
    for r, res in enumerate(ddp_results):
        torch.testing.assert_close(res["all_reduce_sum"], expected, atol=0, rtol=0)
        assert res["world"] == (r, WORLD)


def test_dice_accumulator_sync_matches_single_process(ddp_results):
    """phidice.metrics.DiceAccumulator.sync: hard Dice over the global set of images, every Φ."""
    expected = _cases.accumulate(_cases.make_model(), _cases.make_data())
    assert expected["I"].shape == (4, _cases.C)
    for r, res in enumerate(ddp_results):
        for phi, want in expected.items():
            torch.testing.assert_close(
                res["metrics"][phi], want, atol=1e-12, rtol=0, equal_nan=True, msg=lambda m: f"rank {r} Φ={phi}: {m}"
            )


def test_no_process_group_is_a_noop_with_one_warning(monkeypatch):
    assert not torch.distributed.is_initialized()
    monkeypatch.setattr(pd, "_warned", False)
    data = _cases.make_data()
    logits = _cases.make_model()(data["x"]).detach()
    plain = phidice.dice_loss(logits, data["labels"], phi="BI")
    with pytest.warns(RuntimeWarning, match="no initialised process group"):
        synced = phidice.dice_loss(logits, data["labels"], phi="BI", sync_batch=True)
    assert float(synced) == float(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call must not warn again
        assert float(phidice.DiceLoss("I", sync_batch=True)(logits, data["labels"])) == float(
            phidice.dice_loss(logits, data["labels"], phi="I")
        )
    t = torch.arange(3.0)
    assert pd.all_reduce_sum(t) is t
    stats = phidice.compute_stats(logits, data["labels"])
    assert pd.all_reduce_stats(stats) is stats
    assert pd.get_rank() == 0 and pd.get_world_size() == 1


def test_one_rank_group_is_a_silent_noop(tmp_path, monkeypatch):
    """An initialised group of one rank: nothing to gather, no warning, the plain loss."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setattr(pd, "_warned", False)
    data = _cases.make_data()
    logits = _cases.make_model()(data["x"]).detach()
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            synced = phidice.dice_loss(logits, data["labels"], phi="BCI", sync_batch=True)
        assert pd.get_world_size() == 1 and pd.is_initialized()
    finally:
        torch.distributed.destroy_process_group()
    assert float(synced) == float(phidice.dice_loss(logits, data["labels"], phi="BCI"))


def test_bad_arguments():
    stats = phidice.compute_stats(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4)))
    with pytest.raises(ValueError, match="keep must have shape"):
        pd.gather_batch(stats, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="equal shapes"):
        pd.gather_batch(phidice.DiceStats(stats[0], stats[1], stats[2][:1]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        pd.all_reduce_sum([1.0, 2.0])
