"""One rank of test_nnunet_ddp.py: ``python _nnunet_ddp_worker.py RANK WORLD PORT OUTDIR``.

Runs nnUNetTrainerPhiDice's loss (sync_batch=True, as the trainers set it under DDP) and nnU-Net's stock loss
(ddp=True) on this rank's slice of a fixed batch through a DistributedDataParallel model, and saves each loss
value and the DDP-averaged parameter gradients.
"""

import os
import sys
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _nnunet_ddp_cases as cases


def main(rank: int, world: int, port: int, outdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    results = {}
    for name, (split, build) in cases.CASES.items():  # the same list on every rank
        lo, hi = split[rank]
        x, targets = cases.make_data(name)
        x, targets = x[lo:hi], [t[lo:hi] for t in targets]
        model = DistributedDataParallel(cases.make_model())
        try:
            results[name] = cases.run(model, build(ddp=True), x, targets)
        except Exception:  # noqa: BLE001 - reported by the test, per case
            results[name] = traceback.format_exc()
            break  # collectives may now be out of step
    torch.save(results, os.path.join(outdir, f"rank{rank}.pt"))
    dist.barrier()  # no rank tears gloo down while the other is still in its last collective (it aborted at exit)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
