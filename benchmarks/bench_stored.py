"""numba's fused path with and without the stored probabilities, side by side in one process (CPU).

``recompute``: the route compiled graphs take — the custom operators, the backward recomputing the activation
from the logits (what every call ran before). ``stored``: the forward keeps the probabilities in a fresh buffer
(``torch.empty``), the backward overwrites them with the gradient. ``pooled``: what an eager call runs — the same,
on a buffer of :mod:`phidice.kernels.buffers`, which reuses the previous step's freed gradient memory.
All with MONAI's DiceLoss and the machine's floor (``bench_base_install.floor``) in the same interleaved rounds
(forward+backward, median and min of ``--repeats``, the previous gradient freed before the clock starts), and
the page faults of each step (``ru_minflt``, median).

    .venv/bin/python benchmarks/bench_stored.py --out benchmarks/results/stored.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_base_install import CASES, floor, floor_round, floor_seconds, make_loss, parse  # noqa: E402
from bench_fused import machine, make_inputs, versions  # noqa: E402
from phidice.io import atomic_write  # noqa: E402
from phidice.kernels import function  # noqa: E402

ROUTES = ("recompute", "stored", "pooled", "MONAI")
NUMBA = ROUTES[:3]


@contextlib.contextmanager
def route(name: str):
    """Within the block, eager fused calls take the ``name`` route: ``recompute`` (the custom ops), ``stored``
    (a fresh ``torch.empty`` buffer instead of the pool) or ``pooled`` (the default)."""
    eager, buffer_like = function._eager, function._buffer_like
    if name == "recompute":
        function._eager = lambda *t: False
    if name == "stored":
        function._buffer_like = torch.empty_like
    try:
        yield
    finally:
        function._eager, function._buffer_like = eager, buffer_like


def _step(name: str, loss):
    """forward+backward of ``loss`` on the ``name`` route (held across both)."""

    def step(x, y):
        with route(name):
            loss(x, y).backward()

    return step


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(case: str, repeats: int, order: tuple[str, ...] = (*ROUTES, "floor")) -> tuple[dict, dict, dict]:
    """Per route: (median, min) seconds and the median page faults of a step, the routes of a round in ``order``;
    and the floor timed after the rounds."""
    shape, phi = parse(case)
    x, y = make_inputs(shape, torch.float32)
    numba = make_loss("fused numba", phi)
    monai = make_loss("MONAI", phi)
    fns = {name: _step(name, numba) for name in NUMBA}
    fns["MONAI"] = lambda x, y: monai(x, y).backward()
    one = floor_round(x)
    fns["floor"] = _floor_route(one)
    fns = {k: fns[k] for k in order}
    times: dict = {k: [] for k in fns}
    faults: dict = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(3):
            x.grad = None
            fn(x, y)
    for _ in range(repeats):
        for name, fn in fns.items():
            x.grad = None
            f0 = _faults()
            t0 = time.perf_counter()
            seconds = fn(x, y)
            times[name].append(time.perf_counter() - t0 if seconds is None else seconds)
            faults[name].append(_faults() - f0)
    x.grad = None
    timing = {k: (statistics.median(v), min(v)) for k, v in times.items()}
    return timing, {k: statistics.median(v) for k, v in faults.items()}, floor(x, repeats, one)


def _floor_route(one):
    """The floor as one more route of the rounds (the same cache and thread state as the losses'): the seconds
    of ``bench_base_install.floor_seconds`` for this round of the timer ``one`` (``floor_round``)."""

    def seconds(x, y) -> float:
        return floor_seconds(x, *one())

    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=41)
    p.add_argument("--cases", nargs="+", default=CASES, help="B,C,S1[,S2,S3][:Φ]")
    p.add_argument(
        "--order",
        default=",".join((*ROUTES, "floor")),
        help="the routes of a round, comma-separated (all five); MONAI first puts the pooled route where a loss sits "
        "in training, right after another library's torch ops",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stored.md")
    args = p.parse_args(argv)
    order = tuple(args.order.split(","))
    if sorted(order) != sorted((*ROUTES, "floor")):
        p.error(f"--order must name each of {', '.join((*ROUTES, 'floor'))} once; got {args.order!r}")
    torch.set_num_threads(args.threads)
    load = [os.getloadavg()[0]]
    rows = []
    for case in args.cases:
        t, pf, fl = measure(case, args.repeats, order)
        load.append(os.getloadavg()[0])
        base = t["floor"][0]
        after = fl["exp"] + fl["bytes"] / fl["bw"]
        cells = [f"{t[r][0] * 1e3:.2f} ({t[r][1] * 1e3:.2f})" for r in ROUTES]
        ratios = [f"{t[r][0] / base:.2f}× ({t[r][1] / base:.2f}×)" for r in NUMBA]
        counts = " / ".join(f"{pf[r]:.0f}" for r in ROUTES)
        rows.append(
            f"| {case} | {' | '.join(cells)} | {base * 1e3:.2f} | {after * 1e3:.2f} | {' | '.join(ratios)} | {counts} |"
        )
    text = [
        "### numba's fused path: stored probabilities (fresh or pooled buffer) vs recomputing them",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine()}; torch threads: {args.threads}; versions: {versions()}",
        f"- THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '(unset)')} (PyTorch's huge pages for large "
        "allocations)",
        f"- 1-min load average during the run: {', '.join(f'{v:.1f}' for v in load)}; order of a round: {args.order}",
        f"- ms: median (min) of {args.repeats} interleaved rounds of forward+backward; floor: an exp pass + 3 × the "
        "logits' bytes at the copy bandwidth (`bench_base_install.floor`), timed as one more route of the rounds "
        "(the ratios' floor) and, as before, in a loop of its own after them",
        "",
        "| case | recompute ms | stored ms | pooled ms | MONAI ms | floor ms | floor ms, after | recompute × floor | "
        "stored × floor | pooled × floor | page faults (recompute / stored / pooled / MONAI) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    atomic_write(args.out, "\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
