"""Reading label files for ε: one reader, reader threads (what phidice does), and a spawn process pool.

Writes ``--files`` BraTS-sized label maps (240×240×155, a few ellipsoid blobs of labels 1–3, .nii.gz with
nibabel's default compression) to a temporary folder, then times ``phidice.epsilon_stats(folder, workers=W)``
end to end for

- ``workers=1``: every file read and counted in the calling thread;
- ``threads ×W``: phidice's reader threads;
- ``spawn pool ×W``: the reader that phidice used before (a ``ProcessPoolExecutor`` with the ``spawn`` start
  method, a fresh pool per call), restored here by replacing ``phidice.epsilon._map_files``; its time includes
  starting the pool, as every call paid it.

The pool's start-up alone is timed on two 8×8×8 files in each round. Rounds are interleaved (one run of each
variant per round); the median and minimum of ``--repeats`` rounds are reported, and the three variants must
return identical counts. The Markdown table goes to stdout and ``--out``.

    .venv/bin/python benchmarks/bench_file_reading.py                       # 24 uint8 files
    .venv/bin/python benchmarks/bench_file_reading.py --dtype int16 --files 32
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (240, 240, 155)


def write_files(folder: Path, n: int, dtype, seed: int = 0) -> int:
    """``n`` label maps with 1–4 ellipsoids each (labels 1–3, some maps empty); returns the bytes written."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, s) for s in SHAPE)]
    total = 0
    for i in range(n):
        labels = np.zeros(SHAPE, dtype)
        for _ in range(int(rng.integers(0, 5))):
            centre = rng.uniform(40, np.array(SHAPE) - 40)
            radii = rng.uniform(5, 30, size=3)
            inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
            labels[inside] = rng.integers(1, 4)
        path = folder / f"case{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(labels, np.diag([1.0, 1.0, 1.0, 1.0])), str(path))
        total += path.stat().st_size
    return total


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def spawn_pool_map_files(files, ignore_index, workers):
    """The process-pool reader phidice used before its reader threads (a spawn pool per call)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from phidice.epsilon import _file_counts

    workers = min(workers, len(files))
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_file_counts, path, ignore_index) for path in files]
        try:
            for fut in futures:
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def run_variant(name: str, folder: Path, workers: int):
    import phidice.epsilon as E

    original = E._map_files
    if name.startswith("spawn"):
        E._map_files = spawn_pool_map_files
    try:
        t = time.perf_counter()
        stats = E.epsilon_stats(folder, workers=workers, progress=False)
        return time.perf_counter() - t, stats
    finally:
        E._map_files = original


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--dtype", choices=("uint8", "int16"), default="uint8")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args()

    import nibabel
    import torch

    import phidice.epsilon as E

    load_before = os.getloadavg()[0]
    variants = ["workers=1", f"threads ×{args.workers}", f"spawn pool ×{args.workers}"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    startup: list[float] = []
    with tempfile.TemporaryDirectory(prefix="phidice-bench-io-") as tmp:
        folder, tiny = Path(tmp) / "labels", Path(tmp) / "tiny"
        folder.mkdir()
        tiny.mkdir()
        nbytes = write_files(folder, args.files, np.dtype(args.dtype))
        for i in range(2):
            nibabel.save(nibabel.Nifti1Image(np.ones((8, 8, 8), np.uint8), np.eye(4)), str(tiny / f"t{i}.nii.gz"))
        one = folder / "case000.nii.gz"
        t = time.perf_counter()
        for _ in range(3):
            E._file_counts(one, None)
        per_file = (time.perf_counter() - t) / 3
        reference = None
        for r in range(args.repeats):
            for v in variants:
                seconds, stats = run_variant(v, folder, 1 if v == "workers=1" else args.workers)
                counts = (stats.volume_sum.tolist(), stats.n_positive.tolist(), stats.n_images)
                if reference is None:
                    reference = counts
                elif counts != reference:
                    raise SystemExit(f"{v} returned different counts: {counts} vs {reference}")
                times[v].append(seconds)
                print(f"round {r + 1}/{args.repeats} {v}: {seconds:.2f} s", file=sys.stderr)
            startup.append(run_variant("spawn", tiny, args.workers)[0])

    base = statistics.median(times["workers=1"])
    load_after = os.getloadavg()[0]
    lines = [
        f"Command: `python benchmarks/bench_file_reading.py --files {args.files} --dtype {args.dtype} "
        f"--workers {args.workers} --repeats {args.repeats}`",
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, numpy {np.__version__}, nibabel {nibabel.__version__}, torch "
        f"{torch.__version__}; 1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Data: {args.files} files of {SHAPE[0]}×{SHAPE[1]}×{SHAPE[2]} {args.dtype}, "
        f"{nbytes / args.files / 1e3:.0f} kB each compressed; one file read + counted in the calling thread: "
        f"{per_file * 1e3:.0f} ms.",
        "",
        "| reader | median (s) | min (s) | per file (ms) | speed-up vs workers=1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for v in variants:
        med = statistics.median(times[v])
        lines.append(f"| {v} | {med:.2f} | {min(times[v]):.2f} | {med / args.files * 1e3:.0f} | {base / med:.2f}× |")
    lines += [
        "",
        f"Spawn pool ×{args.workers} on two 8×8×8 files (its start-up, paid by every call): median "
        f"{statistics.median(startup):.2f} s, min {min(startup):.2f} s.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
