"""GradientMonitor under 2-rank DDP (gloo; 2 + 2 images, and 3 + 1 under sync_batch) equals one process on the whole
batch: per-rank sums all-reduced in compute(), and under sync_batch the global batch's subsets on every rank."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _monitor_cases

from _children import run_ranks

pytestmark = pytest.mark.slow  # two gloo processes (~20 s on 2 cores): make test-all
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_monitor_worker.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    outdir = tmp_path_factory.mktemp("monitor_ddp")
    run_ranks(WORKER, 2, outdir, timeout=120)
    return [json.loads((outdir / f"rank{r}.json").read_text()) for r in range(2)]


def flat(result: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value
    return out


@pytest.mark.filterwarnings("ignore:sync_batch=True but torch.distributed")
@pytest.mark.parametrize("name", _monitor_cases.CASES)
def test_two_ranks_equal_one_process(name, ranks):
    want = flat(_monitor_cases.run(name, slice(None)))
    assert want["empty_subset_fraction"] > 0 or name.startswith("BCI")
    for r, got in enumerate(ranks):
        got = flat(got[name])
        assert set(got) == set(want)
        for key, value in want.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert got[key] is None or math.isnan(got[key]), (r, key)
            else:
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-15), (r, key)


def test_a_single_rank_differs(ranks):
    """The check above can fail: rank 1's batch alone gives other values."""
    alone = flat(_monitor_cases.run("I", slice(2, 4)))
    whole = flat(_monitor_cases.run("I", slice(None)))
    assert alone["empty_subset_fraction"] != pytest.approx(whole["empty_subset_fraction"])
