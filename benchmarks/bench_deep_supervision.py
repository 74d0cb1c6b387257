"""Which ``coarse_empty`` policy keeps structures of 1–4 voxels under deep supervision? A CPU-cheap measurement.

Synthetic 2-D task (16 × 16, one input channel, 3 classes): class 1 is 1–3 small blobs of 1–4 voxels per image (the
structures nearest-exact downsampling erases at the coarse levels), class 2 one larger square; both brighter than a
noisy background. A tiny U-Net with three outputs (16, 8, 4 — nnU-Net's pattern) is trained with
``phidice.DeepSupervisionLoss(DiceCELoss(phi="BI", include_background=False), weight_mode="nnunet")``
(``--weight-mode exp``: MONAI's weights, the coarsest level counting too) under each policy, same seeds, same
batches; then scored at full resolution on held-out images: the Dice of the small-structure class over the test set
(pooled), the false-negative rate (share of ground-truth small components, 8-connected, with no predicted voxel of
the class), and the false-positive components per image. Each policy runs with ``--seeds`` seeds; the table shows
mean ± sd.

    .venv/bin/python benchmarks/bench_deep_supervision.py            # → benchmarks/results/deep_supervision.md

It is not part of ``make test`` (a few minutes of CPU): ``make bench-deep-supervision`` runs it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

import phidice
from phidice.io import atomic_write
from phidice.progress import progress

POLICIES = ("missing", "maxpool", "nnunet")
SIZE = 16


def make_data(n: int, seed: int):
    """(images (n, 1, 32, 32) float32, labels (n, 32, 32) int64)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, SIZE, SIZE), np.int64)
    for i in range(n):
        s = rng.integers(4, 7)
        r, c = rng.integers(0, SIZE - s, size=2)
        labels[i, r : r + s, c : c + s] = 2
        for _ in range(rng.integers(1, 4)):
            size = int(rng.integers(1, 5))  # 1–4 voxels: a random walk from a seed voxel
            r, c = rng.integers(0, SIZE, size=2)
            for _ in range(size):
                if labels[i, r, c] == 0:
                    labels[i, r, c] = 1
                dr, dc = [(0, 1), (1, 0), (0, -1), (-1, 0)][rng.integers(4)]
                r, c = int(np.clip(r + dr, 0, SIZE - 1)), int(np.clip(c + dc, 0, SIZE - 1))
    images = rng.normal(0.0, 1.0, size=labels.shape) + 2.0 * (labels == 1) + 1.5 * (labels == 2)
    return torch.tensor(images[:, None], dtype=torch.float32), torch.tensor(labels)


class TinyUNet(nn.Module):
    """Two down-steps, a head per resolution (16, 8, 4), finest first."""

    def __init__(self, width: int = 8, classes: int = 3):
        super().__init__()

        def block(i, o):
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(o, o, 3, padding=1), nn.LeakyReLU(0.1)
            )

        w = [width, 2 * width, 3 * width]
        self.down = nn.ModuleList([block(1, w[0]), block(w[0], w[1]), block(w[1], w[2])])
        self.up = nn.ModuleList([block(w[k] + w[k + 1], w[k]) for k in range(2)])
        self.heads = nn.ModuleList([nn.Conv2d(w[k], classes, 1) for k in range(3)])

    def forward(self, x):
        feats = []
        for k, blk in enumerate(self.down):
            x = blk(x if k == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        outs = [self.heads[2](x)]
        for k in (1, 0):
            x = self.up[k](torch.cat([feats[k], F.interpolate(x, scale_factor=2, mode="nearest")], 1))
            outs.append(self.heads[k](x))
        return outs[::-1]


def train(policy: str, seed: int, data, steps: int, batch: int, weight_mode: str = "nnunet") -> nn.Module:
    torch.manual_seed(seed)
    model = TinyUNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = phidice.DeepSupervisionLoss(
        phidice.DiceCELoss(phi="BI", include_background=False), weight_mode=weight_mode, coarse_empty=policy
    )
    images, labels = data
    order = np.random.default_rng(seed).integers(0, images.shape[0], size=(steps, batch))
    for step in range(steps):
        idx = torch.as_tensor(order[step])
        loss = loss_fn(model(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def score(model: nn.Module, data) -> dict:
    images, labels = data
    pred = model(images)[0].argmax(1).numpy()
    truth = labels.numpy()
    p1, t1 = pred == 1, truth == 1
    dsc = 2 * (p1 & t1).sum() / max(p1.sum() + t1.sum(), 1)
    structure = np.ones((3, 3), bool)
    missed = found = fp = 0
    for i in range(truth.shape[0]):
        comps, n = ndimage.label(t1[i], structure)
        hit = np.bincount(comps[p1[i]], minlength=n + 1)[1:] > 0
        missed, found = missed + int((~hit).sum()), found + int(hit.sum())
        pcomps, m = ndimage.label(p1[i], structure)
        fp += int(sum(1 for k in range(1, m + 1) if not t1[i][pcomps == k].any()))
    large = (pred == 2) & (truth == 2)
    return {
        "dsc_small": float(dsc),
        "fnr_small": missed / max(missed + found, 1),
        "fp_per_image": fp / truth.shape[0],
        "dsc_large": float(2 * large.sum() / max((pred == 2).sum() + (truth == 2).sum(), 1)),
    }


def erased_share(data) -> list[float]:
    """Share of (image, small class) pairs present at 16 × 16 and empty after nearest-exact to each coarse size."""
    _, labels = data
    present = (labels == 1).flatten(1).any(1)
    out = []
    for size in (8, 4):
        coarse = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest-exact")[:, 0]
        out.append(float(((coarse == 1).flatten(1).any(1) == 0)[present].float().mean()))
    return out


def table(results: dict, seeds: int, steps: int, erased: list[float]) -> str:
    rows = [
        "| coarse_empty | small-structure DSC | small-structure FNR | FP components / image | large DSC |",
        "|---|---|---|---|---|",
    ]
    for policy in POLICIES:
        runs = results[policy]

        def ms(key, pct=False):
            vals = [r[key] * (100 if pct else 1) for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.1f} ± {sd:.1f} %" if pct else f"{statistics.mean(vals):.3f} ± {sd:.3f}"

        rows.append(
            f"| `{policy}` | {ms('dsc_small')} | {ms('fnr_small', True)} | {ms('fp_per_image')} | {ms('dsc_large')} |"
        )
    note = (
        f"\n{seeds} seeds × {steps} steps per policy; images in which nearest-exact downsampling erases every "
        f"small structure: {erased[0]:.0%} at 8², {erased[1]:.0%} at 4².\n"
    )
    return "\n".join(rows) + note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weight-mode", default="nnunet", help="nnunet (coarsest level weight 0) or MONAI's exp")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "deep_supervision.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_data, test_data = make_data(512, 0), make_data(256, 1)
    # every finished run is stored at once; an interrupted measurement with the same settings resumes
    store = Path(args.out).with_suffix(".json")
    settings = {k: getattr(args, k) for k in ("steps", "batch", "weight_mode")}
    saved = json.loads(store.read_text()) if store.exists() else {}
    results = saved.get("results", {}) if saved.get("settings") == settings else {}
    results = {p: results.get(p, [])[: args.seeds] for p in POLICIES}
    start = time.perf_counter()
    with progress(total=args.seeds * len(POLICIES), desc="deep supervision", unit="run") as bar:
        for seed in range(args.seeds):
            for policy in POLICIES:  # interleaved: the machine's load falls on every policy alike
                if seed < len(results[policy]):
                    bar.update()
                    continue
                results[policy].append(
                    score(train(policy, seed, train_data, args.steps, args.batch, args.weight_mode), test_data)
                )
                atomic_write(store, json.dumps({"settings": settings, "results": results}, indent=2))
                bar.update()
    md = table(results, args.seeds, args.steps, erased_share(test_data)) + f"weight_mode={args.weight_mode!r}\n"
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads"
    )
    text = (
        f"# Deep supervision and small structures ({datetime.date.today()})\n\n"
        f"`{' '.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}` — {machine}, "
        f"{time.perf_counter() - start:.0f} s\n\n{md}"
    )
    atomic_write(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
