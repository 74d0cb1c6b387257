"""A whole training step with and without the CPU buffer pool (:mod:`phidice.kernels.buffers`), one process.

The pool keeps the memory of the gradient buffer between steps, so that memory is not free for the rest of the
step. Does the saving survive in a training step, or do the network's own allocations then fault instead?
Each step: a 1×1×1 convolution in front of the loss (the cheapest network that consumes the loss's gradient),
numba's fused Dice, backward, an SGD step. Pool on and off alternate round by round (``pool`` vs ``fresh``:
the stored route on ``torch.empty``); median (min) ms and median page faults (``ru_minflt``) of the whole step.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_pool_step.py --out benchmarks/results/pool_step.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_base_install import make_loss, parse  # noqa: E402
from bench_fused import machine, make_inputs, versions  # noqa: E402
from bench_stored import _faults, route  # noqa: E402
from phidice.io import atomic_write  # noqa: E402

CASES = ["2,4,96,96,96:I", "2,16,64,64,64:I", "8,2,256,256:I", "2,4,64,64,64:BI"]
MODES = ("fresh", "pool")


def measure(case: str, repeats: int) -> dict:
    """mode → (median s, min s, median faults) of a training step."""
    shape, phi = parse(case)
    x, y = make_inputs(shape, torch.float32)
    x = x.detach()
    conv = (torch.nn.Conv3d if len(shape) == 5 else torch.nn.Conv2d)(shape[1], shape[1], 1)
    opt = torch.optim.SGD(conv.parameters(), lr=1e-3)
    loss = make_loss("fused numba", phi)

    def step(mode: str) -> None:
        with route("stored" if mode == "fresh" else "pooled"):
            opt.zero_grad(set_to_none=True)
            loss(conv(x), y).backward()
            opt.step()

    out: dict = {m: ([], []) for m in MODES}
    for m in MODES * 3:
        step(m)
    for _ in range(repeats):
        for m in MODES:
            f0 = _faults()
            t0 = time.perf_counter()
            step(m)
            out[m][0].append(time.perf_counter() - t0)
            out[m][1].append(_faults() - f0)
    return {m: (statistics.median(t), min(t), statistics.median(f)) for m, (t, f) in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--cases", nargs="+", default=CASES, help="B,C,S1[,S2,S3][:Φ]")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pool_step.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = [os.getloadavg()[0]]
    rows = []
    for case in args.cases:
        r = measure(case, args.repeats)
        load.append(os.getloadavg()[0])
        cells = [f"{r[m][0] * 1e3:.2f} ({r[m][1] * 1e3:.2f})" for m in MODES]
        faults = [f"{r[m][2]:.0f}" for m in MODES]
        rows.append(f"| {case} | {' | '.join(cells)} | {r['pool'][0] / r['fresh'][0]:.2f} | {' | '.join(faults)} |")
    text = [
        "### A training step (1×1×1 conv + numba's fused Dice + SGD) with and without the CPU buffer pool",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine()}; torch threads: {args.threads}; versions: {versions()}",
        f"- THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '(unset)')}",
        f"- 1-min load average during the run: {', '.join(f'{v:.1f}' for v in load)}",
        f"- ms: median (min) of {args.repeats} alternating rounds; page faults: median per step",
        "",
        "| case | fresh buffer ms | pooled ms | pooled / fresh | faults fresh | faults pooled |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]
    atomic_write(args.out, "\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
