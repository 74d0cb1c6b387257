"""``reproduce``: build the datasets, run the grid (resumable), write the report. Used by ``phidice reproduce``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from phidice.experiments.data import make_dataset
from phidice.experiments.grid import Experiment, GridSettings, run_grid
from phidice.experiments.layouts import load_folder, split_by_case
from phidice.experiments.report import write_report
from phidice.experiments.train import RunConfig, distributed_info


@dataclass(frozen=True)
class Preset:
    """Sizes of a grid: data, training length (images seen per run) and the batch sizes of the binary task."""

    n_train: int
    n_val: int
    size: int
    images: int
    batch_sizes: tuple
    multiclass_batch: int = 2


PRESETS = {
    # quick (default): B = 1, 2, 4 — enough for every claim (B = 1 vs B > 1); B = 8 alone would cost as much
    # as the three together
    "quick": Preset(n_train=240, n_val=96, size=48, images=1600, batch_sizes=(1, 2, 4)),
    # full: twice the data, three times the training, B = 8 too
    "full": Preset(n_train=480, n_val=160, size=48, images=4800, batch_sizes=(1, 2, 4, 8)),
    # smoke: seconds, for tests
    "smoke": Preset(n_train=24, n_val=12, size=16, images=4, batch_sizes=(1, 2)),
}
BINARY_CONFIGS = ("I", "BI", "I_eps")
MULTICLASS_CONFIGS = {"full": ("I", "BI", "I_eps"), "partial": ("I", "BI", "I_eps", "leaf", "marginal")}


def binary_runs(batch_sizes, configs=BINARY_CONFIGS, task="binary"):
    return [RunConfig(task, c, B, lab) for lab in ("full", "partial") for B in batch_sizes for c in configs]


def multiclass_runs(batch_size=2, task="multiclass"):
    return [RunConfig(task, c, batch_size, lab) for lab in ("full", "partial") for c in MULTICLASS_CONFIGS[lab]]


def build_experiments(
    preset: Preset,
    *,
    tasks=("binary", "multiclass"),
    data: str | None = None,
    layout: str = "auto",
    seed: int = 0,
    slices_per_case: int = 3,
    missing_group=None,
    batch_sizes=None,
) -> tuple[list[Experiment], dict]:
    """The experiments to run: the embedded MNI152 tasks, or one task on the user's folder ``data``."""
    batch_sizes = tuple(batch_sizes or preset.batch_sizes)
    exps = []
    if data is not None:
        ds = load_folder(data, layout, size=preset.size, slices_per_case=slices_per_case, missing_group=missing_group)
        train, val = split_by_case(ds, 0.3, seed)
        if ds.num_classes == 1:
            runs = binary_runs(batch_sizes)
        else:
            runs = [
                RunConfig("multiclass", c, B, lab)
                for lab in ("full", "partial")
                for B in batch_sizes
                for c in MULTICLASS_CONFIGS[lab]
            ]
        task = "binary" if ds.num_classes == 1 else "multiclass"
        exps.append(Experiment(task, train, val, runs))
        return exps, {task: val}
    for task in tasks:
        if task not in ("binary", "multiclass"):
            raise ValueError(f"tasks must be 'binary' and/or 'multiclass'; got {task!r}")
        train = make_dataset(task, n=preset.n_train, size=preset.size, seed=seed)
        # validation: balanced groups, so both have enough images for means and the ROC
        val = make_dataset(task, n=preset.n_val, size=preset.size, seed=seed + 1000, minority=0.5)
        runs = binary_runs(batch_sizes) if task == "binary" else multiclass_runs(preset.multiclass_batch)
        exps.append(Experiment(task, train, val, runs))
    return exps, {e.task: e.val for e in exps}


def default_out() -> str:
    return os.path.join("phidice-runs", time.strftime("%Y%m%d-%H%M%S"))


def reproduce(
    out: str | None = None,
    *,
    preset: str = "quick",
    images: int | None = None,
    iterations: int | None = None,
    batch_sizes=None,
    tasks=("binary", "multiclass"),
    data: str | None = None,
    layout: str = "auto",
    device: str = "cpu",
    threads: int | None = 2,
    seed: int = 0,
    lr: float = 1e-3,
    progress: bool = True,
    slices_per_case: int = 3,
    missing_group=None,
    jobs: int | None = None,
    log=print,
) -> str:
    """Run the grid of ``preset`` ("quick", "full" or "smoke") and write the report; returns report.md's path.

    Each run sees ``images`` training images (default: the preset's), i.e. ceil(images / B) steps;
    ``iterations`` fixes the number of steps for every B instead.

    ``threads`` is the CPU budget: on the CPU the grid trains ``jobs`` runs at once, each in its own process
    with threads // jobs torch threads; by default jobs = threads (the small U-Net's steps are too short for
    a second thread to help one run, while two runs side by side take both cores). On a GPU or under torchrun
    the runs go one after the other.

    Re-running with the same ``out`` resumes: runs whose results exist are skipped.
    """
    _check_grid_arguments(preset, images, iterations, batch_sizes, device, jobs)
    p = PRESETS[preset]
    if threads:
        torch.set_num_threads(threads)
    out = out or default_out()
    rank, _, distributed = distributed_info()
    budget = threads or torch.get_num_threads()
    if device != "cpu" or distributed:
        jobs = 1
    elif jobs is None:
        jobs = max(1, min(budget, os.cpu_count() or 1))
    t0 = time.perf_counter()
    exps, vals = build_experiments(
        p,
        tasks=tasks,
        data=data,
        layout=layout,
        seed=seed,
        slices_per_case=slices_per_case,
        missing_group=missing_group,
        batch_sizes=batch_sizes,
    )
    settings = GridSettings(
        images=images or p.images, iterations=iterations, lr=lr, seed=seed, device=device, progress=progress
    )
    if rank == 0:
        n = sum(len(e.runs) for e in exps)
        length = f"{iterations} steps" if iterations else f"{settings.images} images = ⌈{settings.images}/B⌉ steps"
        at_once = f", {jobs} at a time" if jobs > 1 else ""
        log(f"phidice reproduce: {n} runs ({preset}, {length} each{at_once}) -> {out}")
    results = run_grid(exps, settings, out, log=log, jobs=jobs, threads=max(1, budget // jobs))
    if rank != 0:
        return os.path.join(out, "report.md")
    meta = {
        "preset": preset,
        "images": settings.images,
        "iterations": iterations,
        "lr": lr,
        "seed": seed,
        "device": device,
        "data": data or "embedded MNI152 (nilearn)",
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
        "jobs": jobs,
    }
    return write_report(results, out, datasets=vals, meta=meta)


def _check_grid_arguments(preset, images, iterations, batch_sizes, device, jobs) -> None:
    """The arguments of :func:`reproduce`, each refused with a message that names it."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be ≥ 1; got {iterations}")
    if images is not None and images < 1:
        raise ValueError(f"images must be ≥ 1; got {images}")
    if batch_sizes is not None and (not batch_sizes or any(int(b) < 1 for b in batch_sizes)):
        raise ValueError(f"batch sizes must be integers ≥ 1; got {batch_sizes}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be an integer ≥ 1; got {jobs!r}")
