"""One rank of the 2-process gloo run in test_ddp.py: ``python _ddp_worker.py RANK WORLD PORT OUTDIR``.

Runs every case of _cases.py with ``sync_batch=True`` on this rank's slice of the batch through a
DistributedDataParallel model and saves each loss value and the DDP-averaged gradients.
"""

import os
import sys
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cases


def main(rank: int, world: int, port: int, outdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )  # a rank stuck in a collective fails, not hangs
    import phidice

    lo, hi = _cases.SPLITS[rank]
    data = {k: v[lo:hi] for k, v in _cases.make_data().items()}
    model = DistributedDataParallel(_cases.make_model())
    results = {}
    for name, fn in _cases.cases().items():  # the same list on every rank
        try:
            results[name] = _cases.run_case(model, fn, data, sync=True)
        except Exception:  # noqa: BLE001 - reported by the test, per case
            results[name] = traceback.format_exc()
            break  # collectives may now be out of step: stop here
    results["metrics"] = _cases.accumulate(model.module, data, sync=True)
    t = torch.tensor([float(rank + 1), 10.0 * (rank + 1)], dtype=torch.float64)
    results["all_reduce_sum"] = phidice.distributed.all_reduce_sum(t)
    results["world"] = (phidice.distributed.get_rank(), phidice.distributed.get_world_size())
    torch.save(results, os.path.join(outdir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
