"""nnUNetTrainerPhiDice's loss under DDP (2 gloo processes on CPU) equals one process on the whole batch.

With sync_batch (the trainers turn it on under DDP) the Dice of Φ = BI is that of the global batch and the CE
is the mean over every rank's voxels: the loss value on every rank and the DDP-averaged gradients equal a single
process on the concatenated batch, for an even 2 + 2 split and for an uneven 3 + 1 split with an ignore label.
nnU-Net's own loss (ddp=True) on the even split: same gradients, while each rank's value holds its own CE
(their mean is the single-process value).
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_ddp_cases as cases

from _children import run_ranks

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nnunet_ddp_worker.py")


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    outdir = tmp_path_factory.mktemp("nnunet_ddp")
    run_ranks(WORKER, 2, outdir, timeout=180)
    return [torch.load(outdir / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", list(cases.CASES))
def test_ddp_equals_one_process_on_the_whole_batch(name, ddp_results):
    _, build = cases.CASES[name]
    x, targets = cases.make_data(name)
    ref_value, ref_grads = cases.run(cases.make_model(), build(ddp=False), x, targets)
    stock = name.startswith("nnunet")
    tol = 1e-6 if stock else 1e-10  # nnU-Net sums in float32 even for float64 inputs; phidice keeps float64
    values = []
    for r, res in enumerate(ddp_results):
        got = res.get(name)
        assert got is not None and not isinstance(got, str), f"rank {r}, {name}:\n{got}"
        value, grads = got
        values.append(float(value))
        if not stock:  # phidice: the global-batch loss on every rank
            assert float(value) == pytest.approx(float(ref_value), rel=tol, abs=tol), f"rank {r} value"
        for g, rg in zip(grads, ref_grads):
            assert float((g - rg).abs().max()) <= tol * max(1.0, float(rg.abs().max())), f"rank {r} gradients"
    if stock:  # nnU-Net: global batch Dice, but each rank's own CE; DDP averages them
        assert sum(values) / len(values) == pytest.approx(float(ref_value), rel=tol, abs=tol)
        assert abs(values[0] - values[1]) > 1e-4  # the per-rank values differ (their CE)
