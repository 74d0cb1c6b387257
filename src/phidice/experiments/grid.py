"""The experiment grid: one training run per (task, config, B, labelling), resumable, written atomically.

Output folder layout::

    OUT/checkpoints/<key>.pt     model weights of each run (torch.save to a temp file, then os.replace)
    OUT/runs/<key>.json          every number of a run; its presence marks the run as done (resume)
    OUT/preds/<key>.npz          hard predictions on the validation images (for the overlays)
    OUT/results.json, report.md, roc.png, examples.png   (see :mod:`phidice.experiments.report`)
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from phidice import metrics
from phidice.diagnostics.monitor import GradientMonitor
from phidice.experiments.data import SegDataset
from phidice.experiments.train import RunConfig, distributed_info, epsilon_for, make_loss, predict, train_model
from phidice.experiments.unet import UNet2D
from phidice.io import atomic_write
from phidice.progress import progress as progress_bar


@dataclass
class GridSettings:
    """Training settings shared by every run of a grid.

    Each run sees ``images`` training images, i.e. ceil(images / global batch) steps, so that every B gets
    the same number of epochs; under torchrun the global batch is B × ranks (B is per rank). ``iterations``
    (when set) fixes the number of steps instead.
    """

    images: int = 1600
    iterations: int | None = None
    lr: float = 1e-3
    base_channels: int = 12
    levels: int = 3
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def steps(self, global_batch: int) -> int:
        return self.iterations if self.iterations else -(-self.images // global_batch)


@dataclass
class Experiment:
    """One task: its training and validation sets and the runs of the grid."""

    task: str
    train: SegDataset
    val: SegDataset
    runs: list


def atomic_write_json(path: str, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return np.asarray(x).tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _nan_none(v: float):
    v = float(v)
    return None if not np.isfinite(v) else v


def _ml(volumes) -> np.ndarray:
    """Volumes in ml of :func:`phidice.metrics.volume` (given a spacing, so never None)."""
    assert volumes.ml is not None
    return volumes.ml.numpy()


def evaluate(pred: np.ndarray, val: SegDataset) -> dict:
    """Per-image Dice, volumes and ΔV of every foreground class with phidice.metrics, and the per-group means.

    Slices are scored as volumes one voxel thick (a trailing singleton axis), so the spacing's third entry
    turns areas into millilitres. Dice of an empty reference is NaN and left out of the means.
    """
    C = 2 if val.num_classes == 1 else val.num_classes
    p = torch.as_tensor(pred)[..., None]
    y = torch.as_tensor(val.labels)[..., None]
    dsc = metrics.dice_score(p, y, num_classes=C, include_background=False, empty="nan").numpy()
    pv = _ml(metrics.volume(p, val.spacing, num_classes=C, include_background=False))
    rv = _ml(metrics.volume(y, val.spacing, num_classes=C, include_background=False))
    dv = _ml(metrics.volume_difference(p, y, val.spacing, num_classes=C, include_background=False))
    groups = {}
    for g in dict.fromkeys(val.groups.tolist()):
        rows = val.groups == g
        groups[g] = {
            "n": int(rows.sum()),
            "dsc": [_nan_none(np.nanmean(d)) if np.isfinite(d).any() else None for d in dsc[rows].T],
            "dv_ml": [float(v) for v in dv[rows].mean(0)],
            "pred_ml": [float(v) for v in pv[rows].mean(0)],
            "ref_ml": [float(v) for v in rv[rows].mean(0)],
        }
    per_image = {
        "group": val.groups.tolist(),
        "dsc": [[_nan_none(v) for v in row] for row in dsc],
        "pred_ml": pv.tolist(),
        "ref_ml": rv.tolist(),
    }
    return {"groups": groups, "per_image": per_image}


def roc_for(evaluation: dict, cls: int, positive: str) -> dict:
    """Volume-based detection of the ``positive`` (always labelled) group from class ``cls``'s predicted volume."""
    per = evaluation["per_image"]
    r = metrics.volume_roc(np.asarray(per["pred_ml"])[:, cls], np.asarray(per["group"]), positive=positive)
    return {"auc": float(r.auc), "fpr": r.fpr.tolist(), "tpr": r.tpr.tolist(), "positive": positive}


MONITORED_CONFIGS = ("I", "BI", "I_eps")  # the set-ups whose empty maps the report follows over training


def monitor_for(run: RunConfig, loss_fn, train) -> GradientMonitor | None:
    """A GradientMonitor (predicted volumes in ml) for the partial-labelling runs of I, BI and I_ε; None else."""
    if run.labelling != "partial" or run.config not in MONITORED_CONFIGS:
        return None
    return GradientMonitor(loss_fn.loss, spacing=train.spacing, log=False)


def run_one(exp: Experiment, run: RunConfig, settings: GridSettings, out: str) -> dict:
    """Train one configuration, evaluate it on the fully labelled validation set, save checkpoint and results."""
    rank, world, distributed = distributed_info()
    steps = settings.steps(run.batch_size * world)
    partial = run.labelling == "partial"
    train = exp.train.partial() if partial else exp.train
    eps = epsilon_for(train.labels, train.num_classes) if run.config == "I_eps" else None
    loss_fn = make_loss(run.config, train.num_classes, eps)
    torch.manual_seed(settings.seed)  # same initial weights for every configuration
    model = UNet2D(train.images.shape[1], train.num_classes, settings.base_channels, settings.levels)
    trained: torch.nn.Module = model
    if distributed:
        trained = torch.nn.parallel.DistributedDataParallel(model.to(settings.device))
    monitor = monitor_for(run, loss_fn, train)
    t0 = time.perf_counter()
    losses = train_model(
        trained,
        loss_fn,
        train.images,
        train.labels,
        train.annotated(partial),
        batch_size=run.batch_size,
        iterations=steps,
        lr=settings.lr,
        seed=settings.seed,
        device=settings.device,
        progress=settings.progress,
        desc=run.key,
        monitor=monitor,
        steps_per_epoch=math.ceil(len(train) / (run.batch_size * world)),
    )
    seconds = time.perf_counter() - t0
    pred = predict(model, exp.val.images, exp.val.num_classes, settings.device)
    ev = evaluate(pred, exp.val)
    missing_group, missing_classes = next(iter(exp.val.missing.items()))
    cls = missing_classes[0] if exp.val.num_classes > 1 else 1
    positive = next(g for g in ev["groups"] if g != missing_group)
    result = {
        **asdict(run),
        "key": run.key,
        "eps": None if eps is None else [float(v) for v in eps],
        "iterations": steps,
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("progress", "device")},
        "train_seconds": seconds,
        "final_loss": float(np.mean(losses[-25:])) if losses else None,
        "class_names": list(exp.val.class_names),
        "missing_group": missing_group,
        "missing_class": cls,
        "groups": ev["groups"],
        "roc": roc_for(ev, cls - 1, positive),
        "per_image": ev["per_image"],
    }
    if monitor is not None:
        result["monitor"] = monitor.history
    if rank == 0:
        checkpoint = {"model": model.state_dict(), "run": asdict(run), "eps": eps}
        atomic_write(os.path.join(out, "checkpoints", f"{run.key}.pt"), lambda f: torch.save(checkpoint, f))
        atomic_write(
            os.path.join(out, "preds", f"{run.key}.npz"), lambda f: np.savez_compressed(f, pred=pred.astype(np.uint8))
        )
        atomic_write_json(os.path.join(out, "runs", f"{run.key}.json"), result)
    return result


def load_result(out: str, run: RunConfig) -> dict | None:
    path = os.path.join(out, "runs", f"{run.key}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _comparable(settings: dict) -> dict:
    return {k: settings.get(k) for k in ("images", "iterations", "lr", "base_channels", "levels", "seed")}


def run_grid(
    experiments: list[Experiment], settings: GridSettings, out: str, *, log=print, jobs: int = 1, threads: int = 1
) -> dict:
    """Run every configuration of every experiment, skipping those whose result file exists (resume).

    Returns {run key: result}. The set of runs to do is fixed before any training, so all ranks of a
    torchrun job agree on it; only rank 0 writes. ``jobs`` > 1 (CPU, no torchrun) trains that many runs at
    once, each in its own process with ``threads`` torch threads (:func:`run_parallel`).
    """
    rank, _, distributed = distributed_info()
    done = {r.key: load_result(out, r) for e in experiments for r in e.runs}
    current = _comparable(asdict(settings))
    for key, res in done.items():
        if res is not None and _comparable(res.get("settings", {})) != current:
            raise ValueError(
                f"{out} holds run {key} trained with other settings ({_comparable(res.get('settings', {}))} "
                f"vs {current}); resume with the same options or choose another --out"
            )
    todo = [(e, r) for e in experiments for r in e.runs if done[r.key] is None]
    skipped = len(done) - len(todo)
    if skipped and rank == 0:
        log(f"resuming: {skipped} of {len(done)} runs already done in {out}")
    results = {k: v for k, v in done.items() if v is not None}
    if jobs > 1 and len(todo) > 1 and not distributed:
        run_parallel(todo, settings, out, jobs=min(jobs, len(todo)), threads=threads)
        return {**results, **{r.key: load_result(out, r) for _, r in todo}}
    bar = progress_bar(todo, desc="grid", disable=not settings.progress or rank != 0, unit="run")
    for exp, run in bar:
        bar.set_postfix_str(run.key)
        results[run.key] = run_one(exp, run, settings, out)
        if distributed:
            torch.distributed.barrier()
    return results


def run_parallel(todo: list, settings: GridSettings, out: str, *, jobs: int, threads: int) -> None:
    """Train the runs of ``todo`` in ``jobs`` worker processes (:mod:`phidice.experiments.worker`).

    The runs are dealt out longest first (steps ∝ 1/B); a worker that fails stops the others and raises with
    the end of its log; an interrupt (Ctrl-C) stops them all. Finished runs stay written, so re-running resumes.
    """
    work = os.path.join(out, ".workers")
    os.makedirs(work, exist_ok=True)
    order = sorted(todo, key=lambda er: settings.steps(er[1].batch_size), reverse=True)
    quiet = replace(settings, progress=False)
    # the workers import the phidice this process runs, wherever it came from
    source = str(Path(__file__).resolve().parents[2])  # the folder holding phidice/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    procs, logs = [], []
    try:
        for i in range(jobs):
            job = os.path.join(work, f"job{i}.pkl")
            atomic_write(job, pickle.dumps({"runs": order[i::jobs], "settings": quiet, "out": out, "threads": threads}))
            logs.append(os.path.join(work, f"job{i}.log"))
            with open(logs[-1], "wb") as log_file:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "phidice.experiments.worker", job],
                        env=env,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                )
        keys = [r.key for _, r in todo]
        bar = progress_bar(total=len(todo), desc=f"grid ({jobs} workers)", disable=not settings.progress, unit="run")
        shown = 0
        while True:
            codes = [p.poll() for p in procs]
            finished = sum(os.path.exists(os.path.join(out, "runs", f"{k}.json")) for k in keys)
            bar.update(finished - shown)
            shown = finished
            if None not in codes or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.5)
        bar.close()
        for i, code in enumerate(codes):
            if code not in (None, 0):
                with open(logs[i], "rb") as f:
                    tail = f.read()[-4000:].decode(errors="replace")
                raise RuntimeError(
                    f"grid worker {i} failed (exit {code}); the runs it finished are kept "
                    f"(re-run to resume). Its log ends:\n{tail}"
                )
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
