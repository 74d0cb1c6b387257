"""Dice + focal beside Dice + CE: the fused Dice term against the reference path, time and extra memory (CPU).

The protocol of ``bench_fused.py``: in one process, forward+backward of each implementation in interleaved
rounds (median of ``--repeats``, ``malloc_trim(0)`` before each step so that each pays only for its own
memory), ``torch.set_num_threads(--threads)``; extra peak memory in a fresh subprocess per (implementation,
case): VmHWM − VmRSS across one forward+backward after a warm-up, as a multiple of the logits' bytes. The
compound's second term (CE or focal) is the same dense computation on both paths; only the Dice sums differ.

    .venv/bin/python benchmarks/bench_fused_compound.py     # → benchmarks/results/fused_compound_cpu.md
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from phidice.io import atomic_write

CASES = ["2,4,64,64,64", "8,2,256,256"]
IMPLS = [
    "DiceCE fused",
    "DiceCE reference",
    "DiceFocal fused",
    "DiceFocal reference",
    "MONAI DiceCELoss",
    "MONAI DiceFocalLoss",
]


def make_loss(impl: str):
    """(logits, labels (B, *S)) → scalar; Φ = I, ε = 1e-5, softmax; the focal term softmax, γ = 2."""
    import phidice

    if impl.startswith("DiceCE"):
        loss = phidice.DiceCELoss(fused=impl.endswith("fused"))
        return loss
    if impl.startswith("DiceFocal"):
        return phidice.DiceFocalLoss(fused=impl.endswith("fused"), gamma=2.0)
    from monai.losses import DiceCELoss, DiceFocalLoss

    monai = (
        DiceCELoss(softmax=True, to_onehot_y=True)
        if impl == "MONAI DiceCELoss"
        else DiceFocalLoss(softmax=True, to_onehot_y=True, gamma=2.0)
    )
    return lambda x, y: monai(x, y.unsqueeze(1))


def make_inputs(shape):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 2).requires_grad_()
    return x, torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)


def step(fn, x, y):
    x.grad = None
    fn(x, y).backward()


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory_child(impl: str, case: str, threads: int) -> None:
    torch.set_num_threads(threads)
    shape = tuple(int(v) for v in case.split(","))
    fn = make_loss(impl)
    step(fn, *make_inputs((shape[0], shape[1], *[8] * (len(shape) - 2))))
    x, y = make_inputs(shape)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    step(fn, x, y)
    print(json.dumps({"extra": (_status("VmHWM") - before) / (x.numel() * x.element_size())}))


def measure_memory(impl: str, case: str, threads: int) -> float:
    cmd = [sys.executable, __file__, "--memory-child", impl, case, "--threads", str(threads)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])["extra"]


def time_cases(cases, repeats: int) -> dict:
    from tqdm import tqdm

    libc = ctypes.CDLL("libc.so.6")
    fns = {impl: make_loss(impl) for impl in IMPLS}
    out = {}
    for case in cases:
        x, y = make_inputs(tuple(int(v) for v in case.split(",")))
        for fn in fns.values():
            step(fn, x, y)
        times = {impl: [] for impl in IMPLS}
        for _ in tqdm(range(repeats), desc=f"time {case}", leave=False):
            for impl, fn in fns.items():  # interleaved: load on the machine falls on every implementation
                libc.malloc_trim(0)
                t = time.perf_counter()
                step(fn, x, y)
                times[impl].append(time.perf_counter() - t)
        out.update({(case, impl): statistics.median(v) for impl, v in times.items()})
    return out


def table(cases, times, memory) -> str:
    rows = [
        "| case (B, C, *S) | implementation | time (ms) | × its reference | × MONAI | extra memory (× logits) |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        for impl in IMPLS:
            family = "DiceCE" if "CE" in impl else "DiceFocal"
            ref = times[(case, f"{family} reference")]
            monai = times[(case, f"MONAI {family}Loss")]
            t = times[(case, impl)]
            rel = f"{t / ref:.2f}" if not impl.startswith("MONAI") else "—"
            rows.append(f"| {case} | {impl} | {t * 1e3:.1f} | {rel} | {t / monai:.2f} | {memory[(case, impl)]:.2f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fused_compound_cpu.md"))
    parser.add_argument("--memory-child", nargs=2, metavar=("IMPL", "CASE"))
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child, args.threads)
        return 0
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    times = time_cases(args.cases, args.repeats)
    memory = {(c, i): measure_memory(i, c, args.threads) for c in args.cases for i in IMPLS}
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads"
    )
    text = (
        f"# Fused Dice in the compound losses ({datetime.date.today()})\n\n`{Path(__file__).name} "
        f"{' '.join(argv or sys.argv[1:])}` — {machine}, {time.perf_counter() - start:.0f} s; median of "
        f"{args.repeats} interleaved rounds\n\n{table(args.cases, times, memory)}\n"
    )
    atomic_write(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
