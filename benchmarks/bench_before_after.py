"""phidice at two commits, side by side: the fused CPU loss, per-call overhead, and ``validate_args``.

The code of ``--ref`` is exported (``git archive``) to a temporary folder; then, round after round, one
subprocess per tree and case times it (the order of the trees alternates between rounds), each importing its
own phidice through PYTHONPATH. A subprocess reports, per case, the median forward+backward time of
``--repeats`` steps (the previous gradient freed before the clock starts, ``malloc_trim`` before every step:
each step pays for its own memory) and, in the same process, MONAI's DiceLoss on the same input — so each
tree's time is also a ratio measured side by side with the same reference. The table (Markdown) gives, per
case, the medians over rounds and the ratio now/before.

    .venv/bin/python benchmarks/bench_before_after.py --ref 8d77c8e --rounds 7

``--child`` runs one tree's timings (used by the parent). The ``validate_args`` columns exist only for the
current tree: the same loss with ``validate_args=False`` timed in the same process, interleaved.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ["2,4,96,96,96", "2,16,64,64,64", "8,2,256,256", "2,3,32,32", "2,4,16,16,16"]


def _trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def _timed(step, n: int) -> float:
    """Seconds per step, over ``n`` consecutive steps (small cases: per-call overhead, not timer noise)."""
    gc.collect()
    _trim()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def child(cases: list[str], repeats: int, threads: int) -> dict:
    import torch
    from monai.losses import DiceLoss as MonaiDice

    import phidice

    torch.set_num_threads(threads)
    has_validate = hasattr(phidice, "DiceConfig")  # the trees before it had no validate_args
    monai = MonaiDice(softmax=True, to_onehot_y=True, smooth_nr=1e-5, smooth_dr=1e-5)
    out = {}
    for case in cases:
        shape = tuple(int(v) for v in case.split(","))
        g = torch.Generator().manual_seed(0)
        x = (torch.randn(shape, generator=g) * 2).requires_grad_()
        y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        fns = {"fused": phidice.DiceLoss("I", 1e-5, fused=True), "monai": lambda a, b: monai(a, b.unsqueeze(1))}
        if has_validate:
            fns["unchecked"] = phidice.DiceLoss("I", 1e-5, fused=True, validate_args=False)

        def step(fn):
            x.grad = None
            fn(x, y).backward()

        for fn in fns.values():  # warm-up (numba compiles or loads its cache here)
            step(fn)
            step(fn)
        n = max(1, min(200, int(0.02 / _timed(lambda: step(fns["fused"]), 1))))  # ≥ ~20 ms per measurement
        # Interleaved, every phidice measurement right after a MONAI one in both trees: what runs before a step
        # matters (torch's OpenMP team keeps spinning after MONAI's ops and competes with numba's threads).
        sequence = ["monai", "fused"] + (["monai", "unchecked"] if has_validate else [])
        rounds = {k: [] for k in fns}
        for _ in range(repeats):
            for k in sequence:
                rounds[k].append(_timed(lambda: step(fns[k]), n))
        out[case] = {k: statistics.median(v) for k, v in rounds.items()}
    return out


def export(ref: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


def run_child(src: Path, args) -> dict:
    """One tree's timings, one fresh process per case: a large case's thread pools (numba's OpenMP team keeps
    spinning after a parallel kernel) must not slow the next case's torch ops."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = {}
    for case in args.cases:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
            "--cases",
            case,
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def table(results: dict, args, ref: str, head: str) -> str:
    lines = [
        f"- command: `python benchmarks/bench_before_after.py --ref {args.ref} --rounds {args.rounds} "
        f"--repeats {args.repeats}`",
        f"- trees: before = `{ref}`, now = `{head}` (working tree); {args.rounds} rounds, the order of the trees "
        f"alternating; per round, tree and case one process, median of {args.repeats} interleaved measurements per "
        f"implementation, each the mean of n consecutive forward+backward steps (n ≥ 1 so that it lasts ≥ 20 ms; "
        f"heap trimmed before each measurement; each phidice measurement right after a MONAI one)",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch threads {args.threads}; {datetime.datetime.now():%Y-%m-%dT%H:%M}, "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        "- Φ = I, ε = 1e-5, softmax, integer labels, `fused=True` (numba on float32 CPU tensors)",
        "",
        "| case (B,C,S…) | before ms | now ms | now / before | before / MONAI | now / MONAI | "
        "now, validate_args=False ms | saved per call µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in args.cases:

        def med(tree, key):
            return statistics.median(r[case][key] for r in results[tree])

        b, n = med("before", "fused"), med("now", "fused")
        rb = statistics.median(r[case]["fused"] / r[case]["monai"] for r in results["before"])
        rn = statistics.median(r[case]["fused"] / r[case]["monai"] for r in results["now"])
        u = med("now", "unchecked")
        saved = statistics.median(r[case]["fused"] - r[case]["unchecked"] for r in results["now"])
        lines.append(
            f"| {case} | {b * 1e3:.2f} | {n * 1e3:.2f} | {n / b:.2f} | {rb:.2f} | {rn:.2f} | "
            f"{u * 1e3:.2f} | {saved * 1e6:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", default="8d77c8e", help="the commit to compare with (default: before the layers)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", nargs="+", default=CASES)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "before_after.md")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.cases, args.repeats, args.threads)))
        return
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results = {"before": [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": export(args.ref, Path(tmp)), "now": ROOT / "src"}
        for r in range(args.rounds):
            order = ["before", "now"] if r % 2 == 0 else ["now", "before"]
            for tree in order:
                results[tree].append(run_child(trees[tree], args))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    text = table(results, args, args.ref, head)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
