"""numba's fused kernel (the base install) and the install without numba (the reference path, the pure-PyTorch fused
path) against MONAI, nnU-Net and the machine's floor (CPU).

In one process, forward+backward of each implementation is timed in interleaved rounds (median of ``--repeats``,
glibc's default heap, the previous gradient freed before the clock starts), with ``torch.set_num_threads``:

* ``auto, without numba``: what ``fused="auto"`` runs when numba is missing (simulated per call: phidice's numba
  backend reads as not importable), ``fused torch``: the pure-PyTorch fused path forced, ``fused numba``,
  ``reference`` (``fused=False``), MONAI's DiceLoss and nnU-Net's MemoryEfficientSoftDiceLoss;
* the floor of the machine: one ``torch.exp`` pass over the logits (into a preallocated output), and the bytes
  forward + backward must move (logits read twice, gradient written once) at the bandwidth of a large ``copy_``;
* extra peak memory (VmHWM − VmRSS across one forward+backward in a fresh process, as ``bench_fused.py``);
* time-to-first-loss in a fresh process (import + construct + first forward+backward at (2, 4, 32³)): base
  install (numba blocked from importing), ``[numba]`` with an empty JIT cache and again with the cache warm
  (the kernels use ``cache=True``), MONAI;
* ``validate_args=False`` against the default at a small size.

    .venv/bin/python benchmarks/bench_base_install.py --out benchmarks/results/base_install.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_fused import _status, machine, make_inputs, versions  # noqa: E402
from phidice.io import atomic_write  # noqa: E402

CASES = ["2,4,96,96,96:I", "2,16,64,64,64:I", "8,2,256,256:I", "2,4,64,64,64:BI"]
IMPLS = ["auto, without numba", "fused torch", "fused numba", "reference", "MONAI", "nnU-Net"]
COMPILED = ["fused numba, compiled", "MONAI, compiled", "nnU-Net, compiled"]  # torch.compile, inductor, dynamic=True
EPS = 1e-5


def parse(case: str):
    shape, _, phi = case.partition(":")
    return tuple(int(v) for v in shape.split(",")), phi or "I"


class _NoNumba:
    """Within the block, phidice's numba backend reads as not importable (what ``fused="auto"`` sees without it)."""

    def __enter__(self):
        from phidice.kernels import cpu

        self.cpu, self.saved = cpu, (cpu._kernels, cpu._import_error)
        cpu._kernels, cpu._import_error = None, "numba not installed (simulated)"

    def __exit__(self, *exc):
        self.cpu._kernels, self.cpu._import_error = self.saved


def make_loss(impl: str, phi: str, validate_args: bool = True):
    """(logits, labels (B, *S)) → scalar loss of Dice over Φ = ``phi`` (I: per image; BI: over the batch).

    ``"<impl>, compiled"``: that loss under ``torch.compile`` (inductor, ``dynamic=True``; phidice's with
    ``fullgraph=True``: its kernels are custom ops, the backward the recomputing one); it compiles on its first call.
    """
    import phidice
    import phidice.kernels as kernels

    if impl.endswith(", compiled"):
        base = impl.removesuffix(", compiled")
        if base == "fused numba":
            graph = torch.compile(
                lambda x, y: phidice.dice_loss(x, y, fused=True, phi=phi, eps=EPS, validate_args=validate_args),
                fullgraph=True,
                dynamic=True,
            )

            def compiled(x, y):
                previous = kernels.set_backend("numba")
                try:
                    return graph(x, y)
                finally:
                    kernels.set_backend(previous)

            return compiled
        return torch.compile(make_loss(base, phi, validate_args), dynamic=True)
    batch = phi == "BI"
    if impl == "MONAI":
        from monai.losses import DiceLoss

        monai = DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=EPS, smooth_dr=EPS, batch=batch)
        return lambda x, y: monai(x, y.unsqueeze(1))
    if impl == "nnU-Net":
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

        nn = MemoryEfficientSoftDiceLoss(
            apply_nonlin=lambda t: torch.softmax(t, 1), batch_dice=batch, do_bg=True, smooth=EPS, ddp=False
        )
        return lambda x, y: nn(x, y.unsqueeze(1))
    options = dict(phi=phi, eps=EPS, validate_args=validate_args)
    if impl == "reference":
        return lambda x, y: phidice.dice_loss(x, y, fused=False, **options)
    if impl == "auto, without numba":

        def base(x, y):
            with _NoNumba():
                return phidice.dice_loss(x, y, fused="auto", **options)

        return base
    backend = {"fused torch": "torch", "fused numba": "numba"}[impl]

    def forced(x, y):
        previous = kernels.set_backend(backend)
        try:
            return phidice.dice_loss(x, y, fused=True, **options)
        finally:
            kernels.set_backend(previous)

    return forced


def time_interleaved(fns: dict, x, y, repeats: int, warmup: int = 2) -> dict:
    """{name: (median, min) seconds} of forward+backward, the names interleaved round by round."""
    for fn in fns.values():
        for _ in range(warmup):
            x.grad = None
            fn(x, y).backward()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            x.grad = None
            t0 = time.perf_counter()
            fn(x, y).backward()
            times[name].append(time.perf_counter() - t0)
    x.grad = None
    return {name: (statistics.median(ts), min(ts)) for name, ts in times.items()}


COPY_FLOATS = 1 << 26  # the bandwidth's copy_: 256 MB of float32


def floor_round(x: torch.Tensor):
    """A function timing one round of the floor: (seconds of one torch.exp pass over x into a preallocated output,
    seconds of a 256 MB ``copy_``). The output is preallocated because a fresh one above glibc's 32 MB mmap
    threshold (the (2, 16, 64³) logits are 33.5 MB) is mapped anew per call and its page faults, not the
    exponential, then dominate (measured 13 ms against 3.5 ms for the pass itself)."""
    xd = x.detach()
    out = torch.empty_like(xd)
    src = torch.empty(COPY_FLOATS, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)

    def one() -> tuple[float, float]:
        t0 = time.perf_counter()
        torch.exp(xd, out=out)
        t1 = time.perf_counter()
        dst.copy_(src)
        return t1 - t0, time.perf_counter() - t1

    return one


def floor_seconds(x: torch.Tensor, exp: float, copy: float) -> float:
    """The floor: an exp pass + the bytes forward + backward must move (3 × the logits') at the bandwidth of a copy
    that took ``copy`` seconds to read and write 256 MB."""
    return exp + 3 * x.numel() * x.element_size() * copy / (2 * COPY_FLOATS * 4)


def floor(x: torch.Tensor, repeats: int, one=None) -> dict:
    """Median seconds of the exp pass, the copy bandwidth (bytes/s) and the bytes of :func:`floor_seconds`, over
    ``repeats`` rounds of :func:`floor_round` (``one``: a timer already made for x)."""
    one = one or floor_round(x)
    exp, copy = zip(*(one() for _ in range(repeats)))
    bw = 2 * COPY_FLOATS * 4 / statistics.median(copy)  # read + write
    return {"exp": statistics.median(exp), "bw": bw, "bytes": 3 * x.numel() * x.element_size()}


def memory_child(impl: str, case: str, threads: int) -> None:
    """In a fresh process: extra peak RSS of one forward+backward, as a multiple of the logits' bytes.

    Warm-up calls at a small size and at the measured shape load the code and start what a first call starts
    (a compilation, numba's thread pool and its ~2 MB of thread stacks), which would otherwise be counted as
    the loss's memory. Before the measured call the memory the warm-ups freed goes back to the system
    (phidice's buffer pool emptied, glibc's ``malloc_trim``), so that no row reuses memory already counted in the
    RSS.
    """
    import ctypes
    import gc

    from phidice.kernels import buffers

    torch.set_num_threads(threads)
    shape, phi = parse(case)
    fn = make_loss(impl, phi)
    xw, yw = make_inputs((shape[0], shape[1], *[8] * (len(shape) - 2)), torch.float32)
    fn(xw, yw).backward()
    x, y = make_inputs(shape, torch.float32)
    fn(x, y).backward()
    x.grad = None
    del xw, yw
    gc.collect()
    buffers.empty_cache()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    fn(x, y).backward()
    print(json.dumps({"extra": (_status("VmHWM") - before) / (x.numel() * x.element_size())}))


FIRST_CALL = """
import sys, time
{block}
import torch
torch.set_num_threads({threads})
t0 = time.perf_counter()
{body}
x = torch.randn(2, 4, 32, 32, 32, requires_grad=True)
y = torch.randint(0, 4, (2, 32, 32, 32))
loss(x, y).backward()
print(time.perf_counter() - t0)
"""
PHIDICE_FIRST = "import phidice\nloss = phidice.DiceLoss(phi='I')"
MONAI_FIRST = (
    "from monai.losses import DiceLoss\nm = DiceLoss(softmax=True, to_onehot_y=True)\n"
    "loss = lambda x, y: m(x, y.unsqueeze(1))"
)


def first_call(threads: int, rounds: int) -> dict:
    """Median seconds from ``import`` to the first loss's backward, each in a fresh process (after ``import torch``)."""
    cache = tempfile.mkdtemp(prefix="phidice-numba-cache-")
    modes = {
        "without numba (blocked)": ("sys.modules['numba'] = None", PHIDICE_FIRST, None),
        "numba, empty JIT cache": ("", PHIDICE_FIRST, "cold"),
        "numba, warm JIT cache": ("", PHIDICE_FIRST, cache),
        "MONAI DiceLoss": ("", MONAI_FIRST, None),
    }
    out: dict = {name: [] for name in modes}
    for _ in range(rounds):
        for name, (block, body, cache_dir) in modes.items():
            env = dict(os.environ)
            if cache_dir == "cold":
                env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="phidice-numba-cold-")
            elif cache_dir:
                env["NUMBA_CACHE_DIR"] = cache_dir  # filled by the first round's run (that one is not counted)
            code = FIRST_CALL.format(block=block, threads=threads, body=body)
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            out[name].append(float(run.stdout.strip().splitlines()[-1]))
    warm = out["numba, warm JIT cache"]
    out["numba, warm JIT cache"] = warm[1:] or warm  # its first run filled the cache
    return {name: statistics.median(ts) for name, ts in out.items()}


def validate_args_effect(threads: int, repeats: int) -> dict:
    """(8, 2, 64²), Φ = I: phidice auto (base install and [numba]) with and without validate_args, and MONAI."""
    x, y = make_inputs((8, 2, 64, 64), torch.float32)
    fns = {
        "auto, without numba": make_loss("auto, without numba", "I"),
        "auto, without numba, validate_args=False": make_loss("auto, without numba", "I", validate_args=False),
        "fused numba": make_loss("fused numba", "I"),
        "fused numba, validate_args=False": make_loss("fused numba", "I", validate_args=False),
        "MONAI": make_loss("MONAI", "I"),
    }
    return time_interleaved(fns, x, y, repeats * 4)


def run(args) -> str:
    """long on purpose: one table per measurement, each with its header lines."""
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    load = [os.getloadavg()[0]]
    lines = ["| case (B, C, *S) fp32, Φ | implementation | ms median (min) | × MONAI | extra peak (× logits) |"]
    lines.append("|---|---|---:|---:|---:|")
    floors = []
    for case in tqdm(args.cases, desc="cases"):
        shape, phi = parse(case)
        x, y = make_inputs(shape, torch.float32)
        impls = IMPLS + ([] if args.no_compiled else COMPILED)
        times = time_interleaved({impl: make_loss(impl, phi) for impl in impls}, x, y, args.repeats)
        fl = floor(x, args.repeats)
        load.append(os.getloadavg()[0])
        for impl in impls:
            t, tmin = times[impl]
            mem = float("nan") if args.no_memory else memory(impl, case, args.threads)
            lines.append(
                f"| {shape}, {phi} | {impl} | {t * 1e3:.1f} ({tmin * 1e3:.1f}) | {t / times['MONAI'][0]:.2f} | "
                f"{mem:.2f} |"
            )
        bw_t = fl["bytes"] / fl["bw"]
        floors.append(
            f"| {shape} | {fl['exp'] * 1e3:.1f} | {fl['bw'] / 1e9:.1f} GB/s → {bw_t * 1e3:.1f} | "
            + " | ".join(f"{times[i][0] / (fl['exp'] + bw_t):.1f}×" for i in ("auto, without numba", "fused numba"))
            + " |"
        )
        del x, y
    head = [
        "### numba's kernel and the install without numba vs MONAI",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine()}; torch threads: {args.threads}",
        f"- versions: {versions()}",
        f"- 1-min load average during the run: {', '.join(f'{v:.1f}' for v in load)} (a shared, loaded machine)",
        f"- time: median (min) of {args.repeats} interleaved rounds of forward+backward in one process; extra peak "
        "in a fresh process per row (VmHWM − VmRSS, gradient included)",
        "",
    ]
    text = head + lines
    text += [
        "",
        "Floor: one `torch.exp` pass over the logits (into a preallocated output), plus logits read twice and the "
        "gradient written once at the bandwidth of a 256 MB `copy_`; the fused losses as a multiple of exp + "
        "bandwidth time:",
        "",
        "| shape | exp pass ms | bandwidth → ms | auto, without numba | fused numba |",
        "|---|---:|---:|---:|---:|",
        *floors,
    ]
    if not args.no_first_call:
        first = first_call(args.threads, args.first_rounds)
        text += ["", f"Time to first loss (fresh process, median of {args.first_rounds}; after `import torch`):", ""]
        text += ["| install | s |", "|---|---:|", *[f"| {k} | {v:.2f} |" for k, v in first.items()]]
    va = validate_args_effect(args.threads, args.repeats)
    text += ["", "`validate_args` at (8, 2, 64²), Φ = I:", ""]
    text += ["| call | ms median (min) | × MONAI |", "|---|---:|---:|"]
    text += [f"| {k} | {t * 1e3:.2f} ({m * 1e3:.2f}) | {t / va['MONAI'][0]:.2f} |" for k, (t, m) in va.items()]
    return "\n".join(text) + "\n"


def memory(impl: str, case: str, threads: int) -> float:
    cmd = [sys.executable, __file__, "--memory-child", impl, case, "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["extra"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--cases", nargs="+", default=CASES, help="B,C,S1[,S2,S3][:Φ]")
    p.add_argument("--first-rounds", type=int, default=3)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-first-call", action="store_true")
    p.add_argument("--no-compiled", action="store_true", help="leave out the torch.compile rows (each compiles once)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "base_install.md")
    p.add_argument("--memory-child", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child, args.threads)
        return 0
    text = run(args)
    atomic_write(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
