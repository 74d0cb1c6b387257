"""Fused one-hot-free Dice (phidice.kernels) against the reference path, MONAI and nnU-Net: time and extra memory.

CPU (default): in one process, forward+backward of each implementation is timed in interleaved rounds (median of
``--repeats``) with ``torch.set_num_threads(--threads)``, under three heap protocols (``HEAPS``): glibc returns
freed memory to the system lazily, so with its defaults a step can pay for trimming memory the previous
implementation freed (strace showed 11–19 ms ``brk`` calls inside a fused backward that frees 1.7 MB); ``trimmed``
makes each step pay for exactly its own memory, ``warm`` for none. Extra peak memory is measured in a fresh
subprocess per (implementation, case) after a small warm-up: the peak RSS is reset (/proc/self/clear_refs), then
VmHWM − VmRSS across one forward+backward, gradient included, reported as a multiple of the logits' size. The
Markdown table goes to ``--out``, stdout and BENCHMARKS.md (between its ``<!-- bench_fused:cpu-2threads:start/end
-->`` markers, per thread count and ``cuda``; ``--no-benchmarks-md`` leaves it alone).

    .venv/bin/python benchmarks/bench_fused.py                   # CPU → benchmarks/results/fused_cpu.md
    .venv/bin/python benchmarks/bench_fused.py --device cuda     # GPU → benchmarks/results/fused_cuda.md

CUDA: the Triton kernels against MONAI (and the reference path), CUDA-event timing, extra memory from
torch.cuda.max_memory_allocated, and the share of the memory-bandwidth floor: bytes = logits + labels
read twice (forward, backward) + the gradient written once, over the device's peak bandwidth.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from phidice.io import atomic_write

CPU_CASES = ["2,4,96,96,96", "2,16,64,64,64", "8,2,256,256"]
CUDA_CASES = CPU_CASES + ["2,118,128,128,128:bf16"]
IMPLS = [
    "phidice fused",
    "phidice reference",
    "MONAI DiceLoss",
    "nnU-Net MemEffSoftDice",
    "phidice Tversky fused",
    "MONAI TverskyLoss",
]
CUDA_IMPLS = ["phidice fused", "phidice reference", "MONAI DiceLoss", "phidice Tversky fused", "MONAI TverskyLoss"]
TVERSKY = dict(alpha=0.3, beta=0.7)  # the Tversky rows: false negatives weigh more, as for small lesions
# the "× MONAI" column compares each row with MONAI's loss of the same family (no nnU-Net Tversky exists)
MONAI_OF = {"phidice Tversky fused": "MONAI TverskyLoss", "MONAI TverskyLoss": "MONAI TverskyLoss"}
EPS = 1e-5
PEAK_BW = {"H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}  # bytes/s, SXM unless named


def parse_case(case: str):
    shape, _, dtype = case.partition(":")
    return tuple(int(v) for v in shape.split(",")), {
        "": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
        "fp32": torch.float32,
    }[dtype]


def make_loss(impl: str):
    """A callable (logits, labels (B, *S) int64) → scalar loss; all per image and class (Φ = I): Dice, or the
    Tversky index with α = 0.3, β = 0.7 for the Tversky rows."""
    if impl == "phidice fused":
        import phidice

        return lambda x, y: phidice.dice_loss(x, y, phi="I", eps=EPS, fused=True)
    if impl == "phidice reference":
        import phidice

        return lambda x, y: phidice.dice_loss(x, y, phi="I", eps=EPS, fused=False)
    if impl == "phidice Tversky fused":
        import phidice

        return lambda x, y: phidice.tversky_loss(x, y, phi="I", eps=EPS, fused=True, **TVERSKY)
    if impl == "MONAI TverskyLoss":
        from monai.losses import TverskyLoss

        loss = TverskyLoss(softmax=True, to_onehot_y=True, smooth_nr=EPS, smooth_dr=EPS, **TVERSKY)
        return lambda x, y: loss(x, y.unsqueeze(1))
    if impl == "MONAI DiceLoss":
        from monai.losses import DiceLoss

        loss = DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=EPS, smooth_dr=EPS)
        return lambda x, y: loss(x, y.unsqueeze(1))
    if impl == "nnU-Net MemEffSoftDice":
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

        loss = MemoryEfficientSoftDiceLoss(
            apply_nonlin=lambda t: torch.softmax(t, 1), batch_dice=False, do_bg=True, smooth=EPS, ddp=False
        )
        return lambda x, y: loss(x, y.unsqueeze(1))  # its int label map is (B, 1, *S); one-hot built inside
    raise ValueError(f"unknown implementation {impl!r}")


def make_inputs(shape, dtype, device="cpu"):
    g = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.randn(shape, generator=g) * 2).to(device=device, dtype=dtype).requires_grad_()
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g).to(device)
    return x, y


def step(fn, x, y):
    x.grad = None
    fn(x, y).backward()


# ---------------------------------------------------------------- CPU


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory_child(impl: str, case: str, threads: int) -> None:
    """In a fresh process: extra peak RSS of one forward+backward, as a multiple of the logits' bytes."""
    torch.set_num_threads(threads)
    shape, dtype = parse_case(case)
    fn = make_loss(impl)
    xw, yw = make_inputs((shape[0], shape[1], *[8] * (len(shape) - 2)), dtype)  # warm-up: imports, kernels
    if "fused" in impl:  # load the parallel kernels and start their thread pool too (one-time cost)
        from phidice.kernels import cpu

        small, cpu.MIN_PARALLEL_LOGITS = cpu.MIN_PARALLEL_LOGITS, 0
        step(fn, xw, yw)
        cpu.MIN_PARALLEL_LOGITS = small
    step(fn, xw, yw)
    x, y = make_inputs(shape, dtype)
    del xw, yw
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    step(fn, x, y)
    peak = _status("VmHWM")
    print(json.dumps({"extra": (peak - before) / (x.numel() * x.element_size())}))


def measure_memory(impl: str, case: str, threads: int) -> float:
    cmd = [sys.executable, __file__, "--memory-child", impl, case, "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["extra"]


HEAPS = {
    "glibc": "glibc's defaults: a step may pay for trimming memory an earlier step freed",
    "trimmed": "malloc_trim(0) before every step: each step faults in, and gives back, only its own memory",
    "warm": "no trimming, no mmap (mallopt): freed pages are reused, as a caching allocator does",
}


class Heap:
    """glibc's allocator, set per timing protocol (see HEAPS); inert where libc is not glibc."""

    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4

    def __init__(self):
        import ctypes

        try:
            self.libc = ctypes.CDLL("libc.so.6")
            self.libc.malloc_trim, self.libc.mallopt  # noqa: B018 - both must exist
        except (OSError, AttributeError):
            self.libc = None

    def set(self, mode: str) -> bool:
        """Switch to ``mode``; False where it cannot be set here (then only "glibc" is timed)."""
        if mode == "glibc":
            return True
        if self.libc is None:
            return False
        if mode == "warm":  # one-way: the dynamic mmap threshold does not come back, so time it last
            self.libc.mallopt(self.M_MMAP_MAX, 0)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, 2**31 - 1)
        return True

    def before_step(self, mode: str) -> None:
        if mode == "trimmed":
            self.libc.malloc_trim(0)


def time_cpu(cases, impls, repeats: int, heaps=tuple(HEAPS), warmup: int = 2):
    """{(case, impl, heap): median seconds} (and "min"), implementations interleaved round by round.

    Every protocol of ``heaps`` runs in this process, in that order (``warm`` last: it cannot be undone).
    The previous step's gradient is freed before the clock starts, so no step pays for another's.
    """
    from tqdm import tqdm

    heap = Heap()
    fns = {impl: make_loss(impl) for impl in impls}
    results = {}
    for mode in heaps:
        if not heap.set(mode):
            continue
        for case in cases:
            shape, dtype = parse_case(case)
            x, y = make_inputs(shape, dtype)
            for fn in fns.values():
                for _ in range(warmup):
                    step(fn, x, y)
            times = {impl: [] for impl in impls}
            for _ in tqdm(range(repeats), desc=f"time {case} ({mode})", leave=False):
                for impl, fn in fns.items():
                    x.grad = None
                    heap.before_step(mode)
                    t0 = time.perf_counter()
                    fn(x, y).backward()
                    times[impl].append(time.perf_counter() - t0)
            for impl in impls:
                results[case, impl, mode] = statistics.median(times[impl])
                results[case, impl, mode, "min"] = min(times[impl])
            del x, y
    return results


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        model = f"{fields.get('Model name', model).strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"
    except OSError:
        pass
    return f"{model}; {platform.system()} {platform.release()}; Python {platform.python_version()}"


def versions() -> str:
    parts = [f"torch {torch.__version__}"]
    for name in ("numba", "monai", "triton"):
        try:
            parts.append(f"{name} {__import__(name).__version__}")
        except Exception:
            pass
    return ", ".join(parts)


def run_cpu(args) -> str:
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    times = time_cpu(args.cases, IMPLS, args.repeats, heaps=args.heaps)
    load_after = os.getloadavg()[0]
    heaps = [h for h in args.heaps if (args.cases[0], IMPLS[0], h) in times]
    from tqdm import tqdm

    mem = {}
    for case in args.cases:
        for impl in tqdm(IMPLS, desc=f"memory {case}", leave=False):
            mem[case, impl] = measure_memory(impl, case, args.threads) if not args.no_memory else float("nan")
    cols = "".join(f" {h}: ms (min) | × MONAI | × nnU-Net |" for h in heaps)
    lines = [
        f"| case (B, C, *S) fp32 | implementation |{cols} extra peak (× logits) |",
        "|---|---|" + "---:|---:|---:|" * len(heaps) + "---:|",
    ]
    for case in args.cases:
        for impl in IMPLS:
            cells = ""
            for h in heaps:
                t = times[case, impl, h]
                monai = times[case, MONAI_OF.get(impl, "MONAI DiceLoss"), h]
                nnunet = "–" if impl in MONAI_OF else f"{t / times[case, 'nnU-Net MemEffSoftDice', h]:.2f}"
                cells += f" {t * 1e3:.1f} ({times[case, impl, h, 'min'] * 1e3:.1f}) | {t / monai:.2f} | {nnunet} |"
            lines.append(f"| {case.replace(',', ', ')} | {impl} |{cells} {_fmt(mem[case, impl])} |")
    header = [
        "### Fused Dice on the CPU (phidice.kernels)",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine()}; torch threads: {args.threads}",
        f"- versions: {versions()}",
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}; 1-min load average {load_before:.2f} "
        f"before timing, {load_after:.2f} after (a shared machine: above ~0.5 the numbers are disturbed)",
        f"- time: median (and minimum) of {args.repeats} interleaved rounds of forward+backward, same process, "
        "the previous gradient freed before the clock starts; one column group per heap protocol:",
        *[f"  - `{h}`: {HEAPS[h]}" for h in heaps],
        "- extra peak: VmHWM − VmRSS across one forward+backward (gradient included) in a fresh process after a "
        "warm-up, peak reset via /proc/self/clear_refs; Φ = I, ε = 1e-5 everywhere",
        "- the Tversky rows (α = 0.3, β = 0.7) compare with MONAI's TverskyLoss in the × MONAI column",
        "",
    ]
    return "\n".join(header + lines) + "\n"


# ---------------------------------------------------------------- CUDA


def _fmt(value: float) -> str:
    """A ratio for the table, or "–" where it was not measured (--no-memory)."""
    return "–" if math.isnan(value) else f"{value:.2f}"


def peak_bandwidth(name: str, override: float | None) -> float | None:
    if override:
        return override * 1e9
    for key, bw in PEAK_BW.items():
        if all(part in name for part in key.split()):
            return bw
    return None


def run_cuda(args) -> str:
    if not torch.cuda.is_available():
        sys.exit(
            "bench_fused.py --device cuda: CUDA is not available on this machine (torch "
            f"{torch.__version__}); run it on a GPU host, e.g. an H100 or H200."
        )
    import phidice.kernels as kernels

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    bw = peak_bandwidth(name, args.peak_bw)
    cases = args.cases if args.cases != CPU_CASES else CUDA_CASES
    lines = [
        "| case (B, C, *S) dtype | implementation | fwd+bwd ms (median) | × MONAI | extra peak (× logits) | "
        "% of bandwidth floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case in cases:
        shape, dtype = parse_case(case)
        x, y = make_inputs(shape, dtype, dev)
        floor_bytes = 2 * (x.numel() * x.element_size() + y.numel() * y.element_size()) + x.numel() * x.element_size()
        row = {}
        impls = list(CUDA_IMPLS) + ["phidice fused kernels only"]
        for impl in impls:
            if impl == "phidice fused kernels only":

                def fn(a, b):
                    st = kernels.fused_stats(a, b, activation="softmax", mask=None)
                    return st.intersection.sum() + st.pred_sum.sum()
            else:
                fn = make_loss(impl)
            try:
                for _ in range(3):
                    step(fn, x, y)
                torch.cuda.synchronize()
                ts = []
                for _ in range(args.repeats):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    step(fn, x, y)
                    end.record()
                    torch.cuda.synchronize()
                    ts.append(start.elapsed_time(end) / 1e3)
                x.grad = None
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                step(fn, x, y)
                torch.cuda.synchronize()
                extra = (torch.cuda.max_memory_allocated() - before) / (x.numel() * x.element_size())
                row[impl] = (statistics.median(ts), extra)
            except torch.cuda.OutOfMemoryError:
                row[impl] = (float("nan"), float("nan"))
                torch.cuda.empty_cache()
        for impl in impls:
            monai = row[MONAI_OF.get(impl, "MONAI DiceLoss")][0]
            t, extra = row[impl]
            pct = f"{100 * floor_bytes / bw / t:.0f}%" if bw and "fused" in impl else "–"
            lines.append(
                f"| {case.replace(',', ', ')} | {impl} | {t * 1e3:.2f} | {t / monai:.2f} | {extra:.2f} | {pct} |"
            )
        del x, y
        torch.cuda.empty_cache()
    header = [
        "### Fused Dice on the GPU (phidice.kernels, Triton)",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- device: {name}; peak bandwidth used for the floor: {bw / 1e12 if bw else '?'} TB/s",
        f"- versions: {versions()}",
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        "- floor = (logits + labels read in forward and backward + gradient written once) / peak bandwidth",
        "",
    ]
    return "\n".join(header + lines) + "\n"


def update_benchmarks_md(path: Path, key: str, text: str) -> bool:
    """Replace the region between the ``bench_fused:<key>`` markers in ``path`` (BENCHMARKS.md) with ``text``.

    ``key`` is "cuda" or "cpu-<n>threads". False, touching nothing, when the file or its markers are missing.
    """
    start, end = f"<!-- bench_fused:{key}:start -->", f"<!-- bench_fused:{key}:end -->"
    if not path.is_file():
        return False
    doc = path.read_text()
    i, j = doc.find(start), doc.find(end)
    if i < 0 or j < i:
        return False
    body = text.replace("### Fused Dice on the", "#### Latest run: fused Dice on the", 1)
    atomic_write(path, doc[: i + len(start)] + "\n" + body + doc[j:])
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--cases", nargs="+", default=CPU_CASES, help="B,C,S1[,S2,S3][:bf16|fp16]")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument(
        "--heaps",
        nargs="+",
        choices=list(HEAPS),
        default=list(HEAPS),
        help="CPU heap protocols to time, in this order ('warm' cannot be undone: keep it last)",
    )
    p.add_argument("--peak-bw", type=float, default=None, help="GPU peak bandwidth in GB/s (else from the name)")
    p.add_argument(
        "--benchmarks-md",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md",
        help="also write the table into this file, between its bench_fused:<device> markers",
    )
    p.add_argument("--no-benchmarks-md", action="store_true", help="leave BENCHMARKS.md alone")
    p.add_argument("--memory-child", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child, args.threads)
        return 0
    if "warm" in args.heaps and args.heaps[-1] != "warm":
        p.error("--heaps: 'warm' must come last (glibc cannot undo it)")
    if args.repeats < 10:
        p.error("--repeats must be ≥ 10 (median of at least 10 runs)")
    text = run_cuda(args) if args.device == "cuda" else run_cpu(args)
    out = args.out or Path(__file__).parent / "results" / f"fused_{args.device}.md"
    atomic_write(out, text)
    print(text)
    if not args.no_benchmarks_md:
        key = "cuda" if args.device == "cuda" else f"cpu-{args.threads}threads"
        if update_benchmarks_md(args.benchmarks_md, key, text):
            print(f"(table written into {args.benchmarks_md})")
        else:
            print(f"({args.benchmarks_md} has no bench_fused:{key} markers; only {out} was written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
