"""numba's fused path with and without the stored probabilities, side by side in one process (CPU).

``recompute``: the route compiled graphs take — the custom operators, the backward recomputing the activation
from the logits (what every call ran before). ``stored``: what an eager call runs — the forward keeps the
probabilities in the gradient's buffer, the backward overwrites them.
Both with MONAI's DiceLoss and the machine's floor (``bench_base_install.floor``) in the same interleaved rounds
(forward+backward, median and min of ``--repeats``, the previous gradient freed before the clock starts).

    .venv/bin/python benchmarks/bench_stored.py --out benchmarks/results/stored.md
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
from bench_base_install import CASES, floor, make_loss, parse  # noqa: E402
from bench_fused import machine, make_inputs, versions  # noqa: E402
from phidice.io import atomic_write  # noqa: E402
from phidice.kernels import function  # noqa: E402

ROUTES = ("recompute", "stored", "MONAI")


def _step(name: str, loss):
    """forward+backward of ``loss`` on the ``name`` route (the flags held across both)."""
    eager = function._eager

    def step(x, y):
        if name == "recompute":
            function._eager = lambda *t: False
        try:
            loss(x, y).backward()
        finally:
            function._eager = eager

    return step


def measure(case: str, repeats: int) -> tuple[dict, dict]:
    shape, phi = parse(case)
    x, y = make_inputs(shape, torch.float32)
    numba = make_loss("fused numba", phi)
    monai = make_loss("MONAI", phi)
    fns = {
        "recompute": _step("recompute", numba),
        "stored": _step("stored", numba),
        "MONAI": lambda x, y: monai(x, y).backward(),
    }
    times: dict = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(3):
            x.grad = None
            fn(x, y)
    for _ in range(repeats):
        for name, fn in fns.items():
            x.grad = None
            t0 = time.perf_counter()
            fn(x, y)
            times[name].append(time.perf_counter() - t0)
    x.grad = None
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}, floor(x, repeats)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=41)
    p.add_argument("--cases", nargs="+", default=CASES, help="B,C,S1[,S2,S3][:Φ]")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stored.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = [os.getloadavg()[0]]
    rows = []
    for case in args.cases:
        t, fl = measure(case, args.repeats)
        load.append(os.getloadavg()[0])
        base = fl["exp"] + fl["bytes"] / fl["bw"]
        cells = [f"{t[r][0] * 1e3:.2f} ({t[r][1] * 1e3:.2f})" for r in ROUTES]
        ratios = [f"{t[r][0] / base:.2f}× ({t[r][1] / base:.2f}×)" for r in ("recompute", "stored")]
        speed = t["stored"][0] / t["recompute"][0]
        rows.append(f"| {case} | {' | '.join(cells)} | {base * 1e3:.2f} | {' | '.join(ratios)} | {speed:.2f} |")
    text = [
        "### numba's fused path: stored probabilities vs recomputing them",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine()}; torch threads: {args.threads}; versions: {versions()}",
        f"- THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '(unset)')} (PyTorch's huge pages for large "
        "allocations)",
        f"- 1-min load average during the run: {', '.join(f'{v:.1f}' for v in load)}",
        f"- ms: median (min) of {args.repeats} interleaved rounds of forward+backward; floor: exp pass + bytes at "
        "the copy bandwidth (`bench_base_install.floor`)",
        "",
        "| case | recompute ms | stored ms | MONAI ms | floor ms | recompute × floor | stored × floor | "
        "stored / recompute |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    atomic_write(args.out, "\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
