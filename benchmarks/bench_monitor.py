"""The cost of a GradientMonitor: loss + monitor vs the loss alone, side by side in one process.

Per case (B, C, *S), the fused Dice loss (integer labels, softmax; numba on the CPU, Triton on CUDA) is timed
forward + backward, once alone and once with ``monitor=`` (the monitor reads the sums the loss computed),
alternating the two in every round; the table gives the medians over rounds and their ratio, and the hook
(``GradientMonitor.record`` on the same sums) timed alone, a less noisy estimate of its share on a busy host.
Memory: every tensor the monitor's hook creates is recorded (a TorchDispatchMode), and the largest is reported — (K,
C + 1) for the state and (B, C) temporaries, nothing of the volume's size.

    .venv/bin/python benchmarks/bench_monitor.py --rounds 15 --threads 2          # CPU
    .venv/bin/python benchmarks/bench_monitor.py --device cuda --rounds 30        # GPU
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import phidice

CASES = ["2,4,96,96,96", "2,16,64,64,64"]


class _Largest(TorchDispatchMode):
    """The largest number of elements of any tensor an op returns inside the mode."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_case(shape, device, rounds: int, steps: int) -> dict:
    B, C, *S = shape
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=g) * 2).to(device).requires_grad_()
    labels = torch.randint(0, C, (B, *S), generator=g)
    labels[0][labels[0] == C - 1] = 0  # an empty map
    labels = labels.to(device)
    loss = phidice.DiceLoss(phi="I", eps=1e-5, fused=True)
    monitor = phidice.GradientMonitor(loss, log=False)

    def step(m):
        logits.grad = None
        loss(logits, labels, monitor=m).backward()

    for m in (None, monitor, None, monitor):  # warm-up: kernels compiled, allocator primed
        step(m)
    times = {"alone": [], "monitor": []}
    for r in range(rounds):
        order = ("alone", "monitor") if r % 2 == 0 else ("monitor", "alone")
        for name in order:
            m = monitor if name == "monitor" else None
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step(m)
            _sync(device)
            times[name].append((time.perf_counter() - t0) / steps)
    probe = _Largest()
    full = phidice.compute_stats(logits.detach(), labels)
    prepared = phidice.sums.prepare_target(logits, labels, loss.config)
    with probe:
        monitor.record(full, prepared, logits.shape)
    hook = []
    for _ in range(rounds):  # the hook alone, on the same sums: a less noisy estimate of its share
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(10):
            monitor.record(full, prepared, logits.shape)
        _sync(device)
        hook.append((time.perf_counter() - t0) / 10)
    alone, with_monitor = (statistics.median(times[k]) for k in ("alone", "monitor"))
    return dict(
        case=", ".join(map(str, shape)),
        alone_ms=1e3 * alone,
        monitor_ms=1e3 * with_monitor,
        ratio=with_monitor / alone,
        hook_ms=1e3 * statistics.median(hook),
        largest=probe.largest,
        volume=math.prod(shape),
    )


def time_reproduce_step(batch_size: int, rounds: int, steps: int) -> dict:
    """One training step of ``phidice reproduce``'s U-Net (48², the quick preset), with and without the monitor."""
    from phidice.experiments.unet import UNet2D

    torch.manual_seed(0)
    model = UNet2D(1, 1, 8, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 1, 48, 48)
    y = (torch.rand(batch_size, 48, 48) < 0.1).long()
    y[0] = 0
    loss = phidice.DiceLoss(phi="BI", eps=1e-7, activation="sigmoid", fused=False)
    monitor = phidice.GradientMonitor(loss, log=False)

    def step(m):
        optimizer.zero_grad(set_to_none=True)
        loss(model(x), y, monitor=m).backward()
        optimizer.step()

    for m in (None, monitor) * 3:
        step(m)
    times = {"alone": [], "monitor": []}
    for r in range(rounds):
        for name in ("alone", "monitor") if r % 2 == 0 else ("monitor", "alone"):
            t0 = time.perf_counter()
            for _ in range(steps):
                step(monitor if name == "monitor" else None)
            times[name].append((time.perf_counter() - t0) / steps)
    alone, with_monitor = (statistics.median(times[k]) for k in ("alone", "monitor"))
    return dict(alone_ms=1e3 * alone, monitor_ms=1e3 * with_monitor, ratio=with_monitor / alone)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=CASES)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=1, help="steps per timing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--reproduce-steps",
        action="store_true",
        help="also time a training step of phidice reproduce's U-Net (B = 1 and 4) with and without it",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or 'CPU'}, {args.threads} threads"
    )
    print(f"torch {torch.__version__}, {where}; {args.rounds} rounds × {args.steps} steps, medians\n")
    print(
        "| case (B, C, *S) | loss alone (ms) | loss + monitor (ms) | ratio | hook alone (ms) | hook / loss "
        "| largest tensor of the hook (elements) | elements of the input |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in args.cases:
        r = time_case(tuple(int(v) for v in case.split(",")), device, args.rounds, args.steps)
        print(
            f"| {r['case']} | {r['alone_ms']:.2f} | {r['monitor_ms']:.2f} | {r['ratio']:.3f} | {r['hook_ms']:.2f} | "
            f"{r['hook_ms'] / r['alone_ms']:.1%} | {r['largest']} | {r['volume']} |",
            flush=True,
        )
    if args.reproduce_steps:
        print("\n| reproduce training step (U-Net, 48², Φ = BI) | step alone (ms) | step + monitor (ms) | ratio |")
        print("|---|---:|---:|---:|")
        for B in (1, 4):
            r = time_reproduce_step(B, args.rounds, 5 * args.steps)
            print(f"| B = {B} | {r['alone_ms']:.2f} | {r['monitor_ms']:.2f} | {r['ratio']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
