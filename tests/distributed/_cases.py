"""Shared by the DDP worker processes and the single-process reference in test_ddp.py.

A global batch of 4 images is split unevenly, 3 + 1, over 2 ranks. Class 2 appears only in image 3
(rank 1's only image) and image 1 has no class 1, so per-rank Dice, per-rank "skip" rules or
per-rank keep masks would all give a different loss than the global batch.
"""

from __future__ import annotations

import torch
from torch import nn

import phidice
from phidice import DiceStats, compute_stats, loss_from_stats
from phidice.missing import losses as missing_losses

SPLITS = ((0, 3), (3, 4))  # rank r gets images SPLITS[r][0]:SPLITS[r][1]
C, SHAPE = 3, (6, 6)


def make_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(4, 2, *SHAPE, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (4, *SHAPE), generator=g)
    labels[1] = 0  # image 1: no class 1
    labels[3, 1:4, 2:5] = 2  # class 2 only in image 3
    ignore = labels.clone()
    ignore[:, 0, :] = 255  # a row of ignored voxels
    keep = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    onehot = torch.nn.functional.one_hot(labels, C).movedim(-1, 1).to(torch.float64)
    return dict(x=x, labels=labels, ignore=ignore, keep=keep, onehot=onehot)


def make_model() -> nn.Module:
    torch.manual_seed(7)
    return nn.Conv2d(2, C, 3, padding=1).to(torch.float64)


def _dice(phi, **kw):
    def f(out, d, sync):
        target = d["ignore"] if kw.get("ignore_index") is not None else d["labels"]
        return phidice.dice_loss(out, target, phi=phi, sync_batch=sync, **kw)

    return f


def _keep(phi, **kw):
    def f(out, d, sync):
        stats = compute_stats(out, d["labels"], fused=False)
        return loss_from_stats(stats, phi=phi, keep=d["keep"], sync_batch=sync, **kw)

    return f


def _all_reduce_stats(out, d, sync):
    s = compute_stats(out, d["labels"], fused=False)
    s = DiceStats(*(t.sum(0, keepdim=True) for t in s))  # local Φ = BI sums
    if sync:
        s = phidice.distributed.all_reduce_stats(s)
    return loss_from_stats(s, phi="I")  # one (1, C) row: per-class Dice of the (global) batch


def _ce_all_reduce_sum(out, d, sync):
    ce = torch.nn.functional.cross_entropy(out, d["labels"], reduction="none")
    total, count = ce.sum(), torch.tensor(float(ce.numel()), dtype=ce.dtype)
    if sync:
        total, count = phidice.distributed.all_reduce_sum(total), phidice.distributed.all_reduce_sum(count)
    return total / count


def _ce_global_mean(out, d, sync):
    ce = torch.nn.functional.cross_entropy(out, d["ignore"], reduction="none", ignore_index=255)
    count = (d["ignore"] != 255).sum()
    return phidice.distributed.global_mean(ce.sum(), count, sync=sync)


def _dice_ce(phi):
    def f(out, d, sync):
        return phidice.DiceCELoss(phi, sync_batch=sync)(out, d["labels"])

    return f


def _sigmoid(phi):
    def f(out, d, sync):
        return phidice.dice_loss(out, d["onehot"], phi=phi, activation="sigmoid", sync_batch=sync, fused=False)

    return f


def _missing(cls_name, phi, **kw):
    def f(out, d, sync):
        return getattr(missing_losses, cls_name)(phi, sync_batch=sync, **kw)(out, d["labels"], d["keep"])

    return f


def cases() -> dict[str, object]:
    """name -> loss(out, data, sync)."""
    out = {}
    for phi in ("I", "CI", "BI", "BCI"):
        out[f"{phi}-reference"] = _dice(phi, fused=False)
        out[f"{phi}-auto"] = _dice(phi, fused="auto")
        out[f"{phi}-fused"] = _dice(phi, fused=True)
        out[f"{phi}-keep"] = _keep(phi)
        out[f"{phi}-sigmoid-onehot"] = _sigmoid(phi)
    out["BI-fused-ignore-index"] = _dice("BI", ignore_index=255, fused=True)
    out["BCI-fused-sigmoid-labels"] = _dice("BCI", activation="sigmoid", fused=True)
    out["BI-skip-nobg"] = _dice("BI", include_background=False, empty="skip", fused=False)
    out["I-skip-classweights"] = _dice("I", empty="skip", class_weights=[1.0, 2.0, 3.0], fused=False)
    out["CI-skip-classweights"] = _dice("CI", empty="skip", class_weights=[1.0, 2.0, 3.0], fused=False)
    out["BCI-generalized"] = _dice("BCI", weighting="generalized", eps=1.0, fused=False)
    out["CI-generalized-simple"] = _dice("CI", weighting="generalized_simple", fused=False)
    out["BI-ignore-index"] = _dice("BI", ignore_index=255, fused=False)
    out["I-ignore-index-auto"] = _dice("I", ignore_index=255, fused="auto")
    out["I-sum"] = _dice("I", reduction="sum", fused=False)
    out["BI-sum"] = _dice("BI", reduction="sum", fused=False)
    out["I-none"] = _dice("I", reduction="none", fused=False)
    out["CI-none"] = _dice("CI", reduction="none", fused=False)
    out["BI-none"] = _dice("BI", reduction="none", fused=False)
    out["BI-eps0"] = _dice("BI", eps=0.0, fused=False)
    out["BI-all_reduce_stats"] = _all_reduce_stats
    out["CE-mean-all_reduce_sum"] = _ce_all_reduce_sum
    out["CE-global_mean-ignore"] = _ce_global_mean
    for phi in ("I", "CI", "BI", "BCI"):
        out[f"Leaf-{phi}"] = _missing("LeafDiceLoss", phi)
        out[f"Marginal-{phi}"] = _missing("MarginalDiceLoss", phi)
    out["Leaf-BI-nobg-skip"] = _missing("LeafDiceLoss", "BI", include_background=False, empty="skip")
    out["Marginal-BCI-nobg"] = _missing("MarginalDiceLoss", "BCI", include_background=False)
    out["LeafDiceCE-BI"] = _missing("LeafDiceCELoss", "BI")
    out["MarginalDiceCE-I"] = _missing("MarginalDiceCELoss", "I")
    out["DiceCE-BI"] = _dice_ce("BI")
    out["DiceCE-I"] = _dice_ce("I")
    out["Tversky-BI"] = lambda o, d, sync: phidice.tversky_loss(
        o, d["labels"], alpha=0.3, beta=0.7, phi="BI", sync_batch=sync
    )
    out["FocalTversky-BCI-fused"] = lambda o, d, sync: phidice.tversky_loss(
        o, d["labels"], alpha=0.3, beta=0.7, gamma=4 / 3, phi="BCI", fused=True, sync_batch=sync
    )
    out["Jaccard-I-skip"] = lambda o, d, sync: phidice.jaccard_loss(
        o, d["labels"], phi="I", empty="skip", sync_batch=sync
    )
    out["TverskyCE-BI"] = lambda o, d, sync: phidice.TverskyCELoss("BI", alpha=0.3, beta=0.7, sync_batch=sync)(
        o, d["labels"]
    )
    out["LeafJaccard-BI"] = _missing("LeafDiceLoss", "BI", overlap=phidice.JACCARD)
    return out


def backward_scalar(value: torch.Tensor) -> torch.Tensor:
    """A fixed scalar of a loss output (reduction="none" gives a tensor): Σ w·value with fixed w."""
    if value.ndim == 0:
        return value
    w = torch.arange(1, value.numel() + 1, dtype=value.dtype).reshape(value.shape)
    return (w * value).sum()


def run_case(model, fn, data, sync: bool):
    """Loss value and parameter gradients of one forward/backward."""
    model.zero_grad(set_to_none=True)
    value = fn(model(data["x"]), data, sync)
    backward_scalar(value).backward()
    params = model.module.parameters() if hasattr(model, "module") else model.parameters()
    return value.detach().clone(), [p.grad.detach().clone() for p in params]


def accumulate(model, data, phis=("I", "CI", "BI", "BCI"), sync: bool = False) -> dict[str, torch.Tensor]:
    """Hard Dice of argmax predictions through phidice.metrics.DiceAccumulator (synced across ranks if asked)."""
    from phidice.metrics import DiceAccumulator

    acc = DiceAccumulator(num_classes=C)
    with torch.no_grad():
        pred = model(data["x"]).argmax(1)
    for lo in range(0, len(pred), 2):  # batches of 2 images, in order
        acc.update(pred[lo : lo + 2], data["labels"][lo : lo + 2])
    if sync:
        acc.sync()
    return {phi: acc.compute(phi) for phi in phis}
