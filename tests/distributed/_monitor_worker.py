"""One rank of the 2-process gloo run in test_monitor_ddp.py: ``python _monitor_worker.py RANK WORLD PORT OUTDIR``.

Feeds a GradientMonitor with this rank's slice of every case and saves ``compute()``.
"""

import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _monitor_cases


def main(rank: int, world: int, port: int, outdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    results = {name: _monitor_cases.run(name, _monitor_cases.rows_of(name, rank)) for name in _monitor_cases.CASES}
    with open(os.path.join(outdir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
