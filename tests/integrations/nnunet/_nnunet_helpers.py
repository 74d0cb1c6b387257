"""Shared pieces of the nnU-Net integration tests: nnU-Net's stock loss as ``nnUNetTrainer._build_loss`` builds
it (from nnU-Net's own loss classes), inputs of nnU-Net's form, and the comparison rule.

``stock_build_loss`` repeats the ~15 lines of ``_build_loss`` with nnU-Net's real loss classes, which need only
torch and numpy, so the oracle tests run in the default test environment (nnunetv2 installed without its data
pipeline); ``test_nnunet_trainers.py`` checks it against the real ``nnUNetTrainer._build_loss`` where nnU-Net's
full stack is installed.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
PLANS_FILE = DATA / "nnUNetPlans_Dataset611_Synth3D.json"  # written by nnU-Net's planner for a 16³ toy dataset

LABELS = {"background": 0, "blob": 1, "spot": 2}
LABELS_IGNORE = {**LABELS, "ignore": 3}
REGIONS = {"background": 0, "whole": [1, 2], "spot": 2}
REGIONS_IGNORE = {**REGIONS, "ignore": 3}
LABEL_DICTS = {"labels": LABELS, "labels+ignore": LABELS_IGNORE, "regions": REGIONS, "regions+ignore": REGIONS_IGNORE}


def full_nnunet_missing() -> str:
    """Why nnU-Net's trainer cannot be imported here ('' when it can)."""
    try:
        importlib.import_module("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    except ImportError as err:
        return (
            f"needs nnU-Net's full stack ({err}); run `make test-nnunet` (the default test environment "
            f"installs nnunetv2 without its dependencies)"
        )
    return ""


requires_full_nnunet = pytest.mark.skipif(bool(full_nnunet_missing()), reason=full_nnunet_missing() or "-")


def load_plans() -> dict:
    return json.loads(PLANS_FILE.read_text())


def dataset_json(labels: dict) -> dict:
    dj = {"channel_names": {"0": "synthetic"}, "labels": labels, "numTraining": 8, "file_ending": ".nii.gz"}
    if any(isinstance(v, list) for v in labels.values()):
        dj["regions_class_order"] = [1, 2]
    return dj


def ds_weights(levels: int, *, is_ddp: bool = False, compile: bool = False) -> np.ndarray:
    """nnU-Net's deep-supervision weights (nnUNetTrainer._build_loss)."""
    w = np.array([1 / (2**i) for i in range(levels)])
    w[-1] = 1e-6 if is_ddp and not compile else 0
    return w / w.sum()


def stock_build_loss(task, *, ds_levels: int | None, is_ddp: bool = False):
    """nnU-Net's loss as ``nnUNetTrainer._build_loss`` builds it (no torch.compile: CPU)."""
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    if task.regions:
        loss = DC_and_BCE_loss(
            {},
            {"batch_dice": task.batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": is_ddp},
            use_ignore_label=task.ignore_label is not None,
            dice_class=MemoryEfficientSoftDiceLoss,
        )
    else:
        loss = DC_and_CE_loss(
            {"batch_dice": task.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": is_ddp},
            {},
            weight_ce=1,
            weight_dice=1,
            ignore_label=task.ignore_label,
            dice_class=MemoryEfficientSoftDiceLoss,
        )
    if ds_levels is not None:
        loss = DeepSupervisionWrapper(loss, ds_weights(ds_levels, is_ddp=is_ddp))
    return loss


def make_labels(B: int, shape: tuple, *, ignore: int | None, seed: int, num_labels: int = 3) -> torch.Tensor:
    """(B, 1, *shape) int16 label maps (nnU-Net's loader dtype), with ~10 % ignore voxels when asked."""
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, num_labels, (B, 1, *shape), generator=g)
    if ignore is not None:
        lab[torch.rand(lab.shape, generator=g) < 0.1] = ignore
    return lab.to(torch.int16)


def to_regions(lab: torch.Tensor, task) -> torch.Tensor:
    """nnU-Net's region target: (B, R [+1 ignore], *S) bool, as ConvertSegmentationToRegionsTransform makes it."""
    chans = [torch.isin(lab[:, 0], torch.tensor(r, dtype=lab.dtype)) for r in task.channel_labels]
    if task.ignore_label is not None:
        chans.append(lab[:, 0] == task.ignore_label)
    return torch.stack(chans, 1)


def downsample(t: torch.Tensor, levels: int) -> list:
    """Nearest-neighbour pyramid (factor 2 per level), like nnU-Net's DownsampleSegForDSTransform."""
    out = [t]
    for _ in range(levels - 1):
        prev = out[-1]
        out.append(prev[(slice(None), slice(None)) + tuple(slice(None, None, 2) for _ in prev.shape[2:])])
    return out


def make_case(task, *, B: int, shape: tuple, levels: int | None, seed: int, all_ignored: bool = False):
    """(outputs, targets): logits and targets of nnU-Net's form; lists under deep supervision."""
    g = torch.Generator().manual_seed(seed + 1)
    lab = make_labels(B, shape, ignore=task.ignore_label, seed=seed, num_labels=len(task.labels))
    if all_ignored:
        lab[:] = task.ignore_label
    target = to_regions(lab, task) if task.regions else lab
    n = levels or 1
    targets = downsample(target, n)
    outputs = [
        (2 * torch.randn((B, task.num_channels, *t.shape[2:]), generator=g)).requires_grad_(True) for t in targets
    ]
    if levels is None:
        return outputs[0], targets[0]
    return outputs, targets


def grads(loss: torch.Tensor, outputs) -> list:
    outs = outputs if isinstance(outputs, list) else [outputs]
    return list(torch.autograd.grad(loss, outs, allow_unused=True))


def assert_matches_stock(ours_fn, stock_fn, outputs, targets, offset: float, rtol: float = 1e-5) -> None:
    """ours − offset = stock (relative ``rtol``), and the same gradients: per level,
    max |Δg| ≤ rtol · max |g_stock|.

    ``offset`` is λ_dice·Σw: phidice's Dice term is 1 − DSC where nnU-Net's is −DSC.
    """
    ours = ours_fn(outputs, targets)
    stock = stock_fn(outputs, targets)
    g_ours, g_stock = grads(ours, outputs), grads(stock, outputs)
    o, s = float(ours.detach()) - offset, float(stock.detach())
    assert abs(o - s) <= rtol * max(abs(s), 1e-3), f"loss: phidice − offset = {o!r}, nnU-Net = {s!r}"
    for lvl, (a, b) in enumerate(zip(g_ours, g_stock)):
        if b is None:
            assert a is None or float(a.abs().max()) == 0.0, f"level {lvl}: nnU-Net has no gradient, phidice does"
            continue
        assert a is not None, f"level {lvl}: phidice gives no gradient"
        scale = float(b.abs().max())
        assert scale > 0, f"level {lvl}: nnU-Net's gradient is zero"
        err = float((a - b).abs().max()) / scale
        assert err <= rtol, f"level {lvl}: gradient max relative error {err:.2e} > {rtol:g}"
