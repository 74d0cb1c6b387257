"""``phidice nnunet merge`` on many 128³ cases: cases per second and peak memory against the number of cases.

Writes two synthetic nnU-Net raw datasets of 128³ cases (int16 CT-like image, uint8 label map with three
organs; source A labels liver/spleen, source B liver/kidney_left/kidney_right so that B's maps are rewritten
and A's are linked unchanged), ``--cases`` in all, half from each, with case ids colliding between them. For each
size in ``--sizes`` (a subset of the cases, linked into fresh source folders) and each ``-j`` in ``--jobs``, one
merge runs in a fresh process; the process reports the merge's wall time and its peak resident memory
(``ru_maxrss``). Memory must not grow with the number of cases: the merge holds one case per worker.

    .venv/bin/python benchmarks/bench_merge.py                           # 200 cases, sizes 50 and 200, -j 1 and 2
    .venv/bin/python benchmarks/bench_merge.py --cases 400 --sizes 100 400 --jobs 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (128, 128, 128)
SOURCES = (
    ("Dataset701_A", {"background": 0, "liver": 1, "spleen": 2}),
    ("Dataset702_B", {"background": 0, "liver": 1, "kidney_left": 2, "kidney_right": 3}),
)


def _case(rng, n_labels: int):
    import nibabel as nib

    grid = np.indices(SHAPE, dtype=np.float32)
    lab = np.zeros(SHAPE, np.uint8)
    for v in range(1, n_labels + 1):
        c = rng.uniform(30, 98, 3)
        r = rng.uniform(10, 25)
        lab[((grid - c[:, None, None, None]) ** 2).sum(0) <= r * r] = v
    img = (lab.astype(np.int16) * 40 + rng.normal(0, 20, SHAPE)).astype(np.int16) - 1000
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    return nib.Nifti1Image(img, affine), nib.Nifti1Image(lab, affine)


def write_sources(root: Path, n: int, seed: int = 0) -> None:
    import nibabel as nib

    rng = np.random.default_rng(seed)
    for s, (name, labels) in enumerate(SOURCES):
        ds = root / name
        (ds / "imagesTr").mkdir(parents=True)
        (ds / "labelsTr").mkdir()
        count = n // 2 + (s == 0) * (n % 2)
        for i in range(count):
            img, lab = _case(rng, len(labels) - 1)
            nib.save(img, str(ds / "imagesTr" / f"case_{i:04d}_0000.nii.gz"))
            nib.save(lab, str(ds / "labelsTr" / f"case_{i:04d}.nii.gz"))
        dj = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": count, "file_ending": ".nii.gz"}
        (ds / "dataset.json").write_text(json.dumps(dj))


def subset(full: Path, root: Path, n: int) -> None:
    """Fresh source folders holding the first cases of ``full`` (hard links)."""
    for s, (name, labels) in enumerate(SOURCES):
        ds = root / name
        (ds / "imagesTr").mkdir(parents=True)
        (ds / "labelsTr").mkdir()
        count = n // 2 + (s == 0) * (n % 2)
        for i in range(count):
            os.link(
                full / name / "imagesTr" / f"case_{i:04d}_0000.nii.gz", ds / "imagesTr" / f"case_{i:04d}_0000.nii.gz"
            )
            os.link(full / name / "labelsTr" / f"case_{i:04d}.nii.gz", ds / "labelsTr" / f"case_{i:04d}.nii.gz")
        dj = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": count, "file_ending": ".nii.gz"}
        (ds / "dataset.json").write_text(json.dumps(dj))


CHILD = """
import json, resource, sys, time
from phidice.integrations.nnunet import merge_datasets
from phidice.integrations.nnunet import merge  # imports done before the baseline
import nibabel, SimpleITK
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
root, jobs = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
s = merge_datasets(["701", "702"], dataset_id=900, name="Pool", raw_root=root, jobs=jobs, progress=False)
dt = time.perf_counter() - t
print(json.dumps({"cases": s.num_cases, "seconds": dt, "relabelled": s.relabelled,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "base_mib": base}))
"""


def run_one(root: Path, jobs: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(jobs)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="phidice-bench-merge-") as tmp:
        full = Path(tmp) / "full"
        t = time.perf_counter()
        write_sources(full, args.cases)
        made = time.perf_counter() - t
        size_mib = sum(p.stat().st_size for p in full.rglob("*.nii.gz")) / 2**20
        rows = []
        for n in args.sizes:
            for jobs in args.jobs:
                root = Path(tmp) / f"raw_{n}_{jobs}"
                subset(full, root, n)
                r = run_one(root, jobs)
                rows.append((n, jobs, r))
                print(
                    f"{n} cases, -j {jobs}: {r['seconds']:.1f} s, {r['cases'] / r['seconds']:.1f} cases/s, "
                    f"peak {r['peak_mib']:.0f} MiB",
                    file=sys.stderr,
                )
    lines = [
        f"`benchmarks/bench_merge.py --cases {args.cases} --sizes {' '.join(map(str, args.sizes))} --jobs "
        f"{' '.join(map(str, args.jobs))}` — {datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; sources {size_mib:.0f} MiB of .nii.gz "
        f"({args.cases} cases of 128³, written in {made:.0f} s)",
        "",
        "| cases | -j | wall (s) | cases/s | label maps rewritten | peak RSS (MiB) | RSS after imports (MiB) | "
        "merge's own peak (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, jobs, r in rows:
        lines.append(
            f"| {r['cases']} | {jobs} | {r['seconds']:.1f} | {r['cases'] / r['seconds']:.1f} | "
            f"{r['relabelled']} | {r['peak_mib']:.0f} | {r['base_mib']:.0f} | "
            f"{r['peak_mib'] - r['base_mib']:.0f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
