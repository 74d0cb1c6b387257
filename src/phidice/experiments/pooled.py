"""``phidice reproduce --task pooled``: training on a pool of two partially labelled "datasets".

The embedded multiclass images (core, rim, edema; :mod:`phidice.experiments.data`) are split into two sources
that annotate different, overlapping labels and name them differently:

* source A (``Dataset701_A``) labels ``core`` (1) and ``rim`` (2); its edema is background;
* source B (``Dataset702_B``) labels ``Rim`` (1) and ``edema`` (2); its core is background.

They are pooled with the label plan of ``phidice nnunet merge`` (:func:`phidice.missing.pooling.plan_labels`,
sources in the order B, A: merged Rim = 1, edema = 2, core = 3), whose per-case annotated labels feed the
losses. Runs, each on the same images and steps:

* (a) ``full``: every label of every image, Dice + cross-entropy (Φ = I, nnU-Net's terms), softmax;
  ``full_sigmoid``: the same with per-class sigmoid outputs and binary cross-entropy (the reference of the
  sigmoid pool run);
* (b) ``leaf`` (leaf Dice + marginal CE) and ``marginal`` (marginal Dice with the background channel, which
  holds the unannotated classes' probabilities, + marginal CE): the pool with ``annotated``, softmax;
  ``sigmoid_annotated``: per-class sigmoid outputs, Dice and binary cross-entropy on annotated classes only
  (MultiTalent's choice; ``LeafDiceCELoss(activation="sigmoid")``);
* (c) ``naive``: the pool merged by hand — every label taken as annotated, unannotated structures = background —
  with the same Dice + CE. ``naive_dice_only`` (reported, not checked) drops the CE: with Φ = I and a negligible
  ε an empty target barely moves the network (the paper's finding), so the Dice alone is hurt far less.

Every model is scored on held-out images with all labels (per image and class, DSC of the binary mask:
argmax == c for softmax, sigmoid > 0.5 for sigmoid). The report checks, with paired sign-flip tests and
bootstrap intervals (:mod:`phidice.metrics.bootstrap`): (b) is close to its reference (a) on every label (mean
DSC difference ≥ −``CLOSE``), and (c) is significantly worse than (a) on the labels each source lacks (core,
edema). Each run's numbers go to ``OUT/pooled/runs/<name>.json`` (written atomically; a re-run resumes).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

import phidice
from phidice.experiments.data import SegDataset, make_dataset
from phidice.experiments.train import PAPER_EPS, train_model
from phidice.experiments.unet import UNet2D
from phidice.io import atomic_write
from phidice.metrics.bootstrap import bootstrap_ci, paired_test
from phidice.missing.pooling import LabelPlan, PoolSource, plan_labels

__all__ = ["POOLED_PRESETS", "POOL_RUNS", "PooledPreset", "make_pool", "reproduce_pooled"]

CLOSE = 0.05  # (b) counts as close to (a) when its mean DSC is at most this much lower
ALPHA = 0.05
SOURCES = (
    PoolSource("Dataset702_B", {"background": 0, "Rim": 1, "edema": 2}),
    PoolSource("Dataset701_A", {"background": 0, "core": 1, "rim": 2}),
)
# each source's label values → the embedded data's values (core 1, rim 2, edema 3)
TO_DATA = ({1: 2, 2: 3}, {1: 1, 2: 2})
# name -> (labels: "full" | "pool", loss class, activation, uses annotated). Dice + cross-entropy, Φ = I: the
# terms nnU-Net trains with. The background channel is left out of the Dice except in the marginal Dice, where it
# holds the merged probabilities of the unannotated classes (without it the marginal Dice equals the leaf Dice).
POOL_RUNS = {
    "full": ("full", "DiceCELoss", "softmax", False),
    "full_sigmoid": ("full", "DiceCELoss", "sigmoid", False),
    "leaf": ("pool", "LeafDiceCELoss", "softmax", True),
    "marginal": ("pool", "MarginalDiceCELoss", "softmax", True),
    "sigmoid_annotated": ("pool", "LeafDiceCELoss", "sigmoid", True),
    "naive": ("pool", "DiceCELoss", "softmax", False),
    "naive_dice_only": ("pool", "DiceLoss", "softmax", False),
}
WITH_BACKGROUND = {"marginal"}
REFERENCE = {"leaf": "full", "marginal": "full", "sigmoid_annotated": "full_sigmoid", "naive": "full"}


@dataclass(frozen=True)
class PooledPreset:
    n_train: int
    n_test: int
    size: int
    images: int
    batch_size: int = 4


POOLED_PRESETS = {
    "quick": PooledPreset(240, 96, 48, 2400),
    "full": PooledPreset(480, 160, 48, 6000),
    "smoke": PooledPreset(16, 8, 16, 8, 2),
}


@dataclass
class Pool:
    """The pooled training set: merged labels, annotated rows, full labels in merged values, the plan."""

    images: np.ndarray
    labels: np.ndarray  # (N, H, W) merged values, unannotated structures = 0
    full_labels: np.ndarray  # (N, H, W) every structure, merged values
    annotated: np.ndarray  # (N, C) bool
    source: np.ndarray  # (N,) source index
    plan: LabelPlan
    to_merged: np.ndarray  # data value → merged value


def make_pool(train: SegDataset, seed: int = 0) -> Pool:
    """Split ``train`` into sources B and A (alternately after a seeded shuffle) and merge their label maps."""
    rng = np.random.default_rng(seed)
    source = np.zeros(len(train), dtype=np.int64)
    source[rng.permutation(len(train))[: len(train) // 2]] = 1
    plan = plan_labels(SOURCES)
    to_merged = np.zeros(4, dtype=np.int64)
    for s, mapping in enumerate(TO_DATA):
        for src_value, data_value in mapping.items():
            to_merged[data_value] = plan.luts[s][src_value]
    labels = np.zeros_like(train.labels)
    annotated = np.zeros((len(train), plan.num_classes), dtype=bool)
    for s, mapping in enumerate(TO_DATA):
        rows = source == s
        src = np.zeros_like(train.labels[rows])  # the source's own label map: its labels only, in its values
        for src_value, data_value in mapping.items():
            src[train.labels[rows] == data_value] = src_value
        labels[rows] = plan.remap(s, src, where=f"image labels of {SOURCES[s].key}")
        annotated[np.ix_(rows, [0, *plan.annotated(s)])] = True
    return Pool(train.images, labels, to_merged[train.labels], annotated, source, plan, to_merged)


def _loss(name: str):
    _, cls, activation, uses_annotated = POOL_RUNS[name]
    loss = getattr(phidice, cls)(
        phi="I", eps=PAPER_EPS, activation=activation, include_background=name in WITH_BACKGROUND, fused=False
    )
    if uses_annotated:
        return lambda logits, y, a: loss(logits, y, a)
    return lambda logits, y, a: loss(logits, y)


@torch.no_grad()
def class_masks(model, images: np.ndarray, activation: str, batch: int = 32) -> np.ndarray:
    """(N, C, H, W) bool: argmax == c (softmax) or sigmoid > 0.5 (sigmoid) per class."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        logits = model(torch.as_tensor(images[i : i + batch]))
        if activation == "sigmoid":
            out.append((logits > 0).numpy())
        else:
            hard = logits.argmax(1)
            out.append(torch.stack([hard == c for c in range(logits.shape[1])], 1).numpy())
    return np.concatenate(out)


def dice_per_class(masks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, C−1) DSC of classes 1..C−1 per image; NaN when reference and prediction are both empty."""
    C = masks.shape[1]
    ref = np.stack([labels == c for c in range(1, C)], 1)
    pred = masks[:, 1:]
    inter = (ref & pred).sum((2, 3))
    total = ref.sum((2, 3)) + pred.sum((2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * inter / total, np.nan)


def _run_one(
    name: str, pool: Pool, test_images, test_labels, preset: PooledPreset, *, seed: int, lr: float, progress: bool
) -> dict:
    """Train run ``name`` on the pool and score it on the test images (merged values)."""
    labels_kind, _, activation, _ = POOL_RUNS[name]
    C = pool.plan.num_classes
    torch.manual_seed(seed)
    model = UNet2D(1, C, base=12, levels=3)
    y = pool.full_labels if labels_kind == "full" else pool.labels
    a = np.ones_like(pool.annotated) if labels_kind == "full" else pool.annotated
    t0 = time.perf_counter()
    steps = -(-preset.images // preset.batch_size)
    losses = train_model(
        model,
        _loss(name),
        pool.images,
        y,
        a,
        batch_size=preset.batch_size,
        iterations=steps,
        lr=lr,
        seed=seed,
        progress=progress,
        desc=f"pooled {name}",
    )
    dsc = dice_per_class(class_masks(model, test_images, activation), test_labels)
    return {
        "name": name,
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "final_loss": float(np.mean(losses[-20:])),
        "dsc": dsc.tolist(),
    }


def _paired(a: np.ndarray, b: np.ndarray, names) -> dict:
    t = paired_test(a, b, n_resamples=5000, seed=0, names=names)
    return {"diff": t.difference, "low": t.low, "high": t.high, "p": t.p_value, "n": t.n}


def check_pooled(runs: dict, names: list) -> list:
    """The report's checks: (b) close to (a) on every label; (c) significantly worse on each source's gaps."""
    checks = []
    for b_name in ("leaf", "marginal", "sigmoid_annotated"):
        ref = REFERENCE[b_name]
        for j, label in enumerate(names):
            t = _paired(np.array(runs[b_name]["dsc"])[:, j], np.array(runs[ref]["dsc"])[:, j], (b_name, ref))
            checks.append({"claim": f"{b_name} close to {ref} on {label}", "ok": t["diff"] >= -CLOSE, **t})
    lacking = {"core": "B lacks it", "edema": "A lacks it"}
    for j, label in enumerate(names):
        if label.lower() in lacking:
            t = _paired(np.array(runs["naive"]["dsc"])[:, j], np.array(runs["full"]["dsc"])[:, j], ("naive", "full"))
            checks.append(
                {
                    "claim": f"naive significantly worse than full on {label} ({lacking[label.lower()]})",
                    "ok": t["diff"] < 0 and t["p"] < ALPHA,
                    **t,
                }
            )
    return checks


def _table(runs: dict, names: list) -> list:
    lines = [
        "| run | labels | output | " + " | ".join(f"{n} DSC [95 % CI]" for n in names) + " | time (s) |",
        "|---|---|---|" + "---|" * (len(names) + 1),
    ]
    for name, (kind, cls, activation, uses) in POOL_RUNS.items():
        d = np.array(runs[name]["dsc"])
        cells = []
        for j in range(len(names)):
            ci = bootstrap_ci(d[:, j], n_resamples=5000, seed=0)
            cells.append(f"{ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]")
        what = "full" if kind == "full" else ("pool + annotated" if uses else "pool, naive (unannotated = 0)")
        bg = ", background in" if name in WITH_BACKGROUND else ""
        lines.append(
            f"| {name} | {what} | {activation} ({cls}{bg}) | " + " | ".join(cells) + f" | {runs[name]['seconds']:.0f} |"
        )
    return lines


def write_pooled_report(runs: dict, plan, out: str, meta: dict) -> str:
    names = plan.names[1:]
    checks = check_pooled(runs, names)
    md = [
        "# phidice reproduce --task pooled",
        "",
        "Two sources of the embedded multiclass images, pooled with the label plan of `phidice nnunet merge`:",
        "",
        plan.table_markdown(),
        "",
        f"{meta['n_train']} training images (half per source), {meta['n_test']} test images with every label; "
        f"{meta['steps']} steps of B = {meta['batch_size']} per run, Φ = I, seed {meta['seed']}; "
        f"{meta['wall_seconds']:.0f} s in all ({meta['machine']}).",
        "",
        "## Dice per label on the test images (mean over images, 95 % bootstrap CI)",
        "",
        *_table(runs, names),
        "",
        "## Checks",
        "",
        f"(b) close to (a): mean paired DSC difference ≥ −{CLOSE}; (c) worse than (a): difference < 0 with a "
        f"two-sided sign-flip p < {ALPHA}.",
        "",
        "| claim | holds | Δ DSC [95 % CI] | p | n |",
        "|---|---|---|---|---|",
    ]
    for c in checks:
        md.append(
            f"| {c['claim']} | {'yes' if c['ok'] else '**no**'} | {c['diff']:+.3f} [{c['low']:+.3f}, "
            f"{c['high']:+.3f}] | {c['p']:.3g} | {c['n']} |"
        )
    path = os.path.join(out, "pooled_report.md")
    atomic_write(path, "\n".join(md) + "\n")
    atomic_write(
        os.path.join(out, "pooled_results.json"),
        json.dumps({"meta": meta, "labels": names, "checks": checks, "runs": runs}, indent=1) + "\n",
    )
    return path


def reproduce_pooled(
    out: str,
    *,
    preset: str = "quick",
    seed: int = 0,
    lr: float = 1e-3,
    threads: int = 2,
    progress: bool = True,
    log=print,
) -> str:
    """Run the pooled experiment (module doc) into ``out``; returns the report's path. Re-running resumes."""
    if preset not in POOLED_PRESETS:
        raise ValueError(f"preset must be one of {sorted(POOLED_PRESETS)}; got {preset!r}")
    p = POOLED_PRESETS[preset]
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    train = make_dataset("multiclass", n=p.n_train, size=p.size, seed=seed)
    test = make_dataset("multiclass", n=p.n_test, size=p.size, seed=seed + 1000, minority=0.5)
    pool = make_pool(train, seed)
    test_labels = pool.to_merged[test.labels]
    runs = {}
    log(f"phidice reproduce --task pooled: {len(POOL_RUNS)} runs ({preset}) -> {out}")
    for name in POOL_RUNS:
        path = os.path.join(out, "pooled", "runs", f"{name}.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                runs[name] = json.load(f)
            continue
        runs[name] = _run_one(name, pool, test.images, test_labels, p, seed=seed, lr=lr, progress=progress)
        atomic_write(path, json.dumps(runs[name]) + "\n")
        log(
            f"  {name}: {runs[name]['seconds']:.0f} s, mean DSC "
            + ", ".join(f"{n} {v:.3f}" for n, v in zip(pool.plan.names[1:], np.nanmean(runs[name]["dsc"], 0)))
        )
    meta = {
        "preset": preset,
        "seed": seed,
        "lr": lr,
        "n_train": p.n_train,
        "n_test": p.n_test,
        "steps": -(-p.images // p.batch_size),
        "batch_size": p.batch_size,
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{os.cpu_count()} CPUs, cpu",
    }
    return write_pooled_report(runs, pool.plan, out, meta)
