"""DiceAccumulator: batches sum to one big batch; sync() gathers the counts of every rank."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from phidice.metrics import DiceAccumulator, dice_score, hard_stats


def _data(seed, B=6, C=3):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(0, C, (B, 5, 7), generator=g)
    pred = torch.randint(0, C, (B, 5, 7), generator=g)
    ref[0][ref[0] == 2] = 0
    return pred, ref


@pytest.mark.parametrize("phi", ["I", "CI", "BI", "BCI"])
def test_batches_equal_one_batch(phi):
    pred, ref = _data(0)
    acc = DiceAccumulator(3, empty="one")
    for sl in (slice(0, 2), slice(2, 3), slice(3, 6)):
        acc.update(pred[sl], ref[sl])
    expected = dice_score(pred, ref, num_classes=3, phi=phi, empty="one")
    torch.testing.assert_close(acc.compute(phi), expected, rtol=0, atol=0)
    torch.testing.assert_close(acc.compute(phi, reduction="mean"), expected.nanmean(), rtol=0, atol=0)
    assert acc.num_images == 6


def test_inferred_classes_are_padded_and_reset():
    acc = DiceAccumulator()
    acc.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))  # C inferred 2
    acc.update(torch.tensor([[0, 2]]), torch.tensor([[2, 2]]))  # C inferred 3
    s = acc.stats
    assert s.pred_sum.tolist() == [[1, 1, 0], [1, 0, 1]]
    assert s.target_sum.tolist() == [[1, 1, 0], [0, 0, 2]]
    out = acc.compute("BI", empty="nan")
    torch.testing.assert_close(out, torch.tensor([[2 / 3, 1.0, 2 / 3]], dtype=torch.float64))
    acc.reset()
    with pytest.raises(ValueError, match="empty"):
        acc.compute()
    with pytest.raises(ValueError, match="empty"):
        DiceAccumulator(empty="skip")
    with pytest.raises(TypeError, match="DiceStats"):
        acc.update_stats((1, 2, 3))


def test_sync_without_process_group_is_a_no_op():
    pred, ref = _data(1)
    acc = DiceAccumulator(3)
    acc.update(pred, ref)
    assert acc.sync() is acc
    assert torch.equal(acc.stats.intersection, hard_stats(pred, ref, num_classes=3).intersection)


_SCRIPT = textwrap.dedent("""
    import os, sys, tempfile
    import torch, torch.distributed as dist, torch.multiprocessing as mp
    from phidice.metrics import DiceAccumulator, dice_score

    def data():
        g = torch.Generator().manual_seed(0)
        ref = torch.randint(0, 3, (5, 4, 6), generator=g)
        pred = torch.randint(0, 3, (5, 4, 6), generator=g)
        ref[0][ref[0] == 2] = 0
        return pred, ref

    def work(rank, init, out):
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
        pred, ref = data()
        sl = slice(0, 2) if rank == 0 else slice(2, 5)  # unequal shares
        acc = DiceAccumulator(3)
        acc.update(pred[sl], ref[sl])
        acc.sync(); acc.sync()  # idempotent
        res = {phi: acc.compute(phi) for phi in ("I", "CI", "BI", "BCI")}
        torch.save(res, os.path.join(out, f"rank{rank}.pt"))
        dist.destroy_process_group()

    if __name__ == "__main__":
        out = sys.argv[1]
        init = "file://" + os.path.join(out, "store")
        mp.start_processes(work, args=(init, out), nprocs=2, start_method="fork")
        pred, ref = data()
        want = {phi: dice_score(pred, ref, num_classes=3, phi=phi) for phi in ("I", "CI", "BI", "BCI")}
        for rank in (0, 1):
            got = torch.load(os.path.join(out, f"rank{rank}.pt"))
            for phi in want:
                torch.testing.assert_close(got[phi], want[phi], rtol=0, atol=0, equal_nan=True)
        print("OK")
""")


def test_sync_gathers_two_gloo_ranks(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    script = tmp_path / "ddp.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
