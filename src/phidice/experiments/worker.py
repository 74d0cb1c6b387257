"""One worker process of a parallel grid: ``python -m phidice.experiments.worker JOBFILE``.

The job file (a pickle written by :func:`phidice.experiments.grid.run_parallel`) holds the worker's share of the
runs, the grid settings, the output folder and its torch thread count; each finished run is written by
:func:`~phidice.experiments.grid.run_one` exactly as in a sequential grid (atomically, so a grid stopped midway
resumes). A separate interpreter rather than a multiprocessing pool: nothing of the caller's ``__main__`` is
re-imported, so a plain script or a notebook can run a parallel grid.
"""

from __future__ import annotations

import pickle
import sys

import torch

from phidice.experiments.grid import run_one


def main(job_file: str) -> None:
    with open(job_file, "rb") as f:
        job = pickle.load(f)
    torch.set_num_threads(job["threads"])
    for exp, run in job["runs"]:
        run_one(exp, run, job["settings"], job["out"])


if __name__ == "__main__":
    main(sys.argv[1])
