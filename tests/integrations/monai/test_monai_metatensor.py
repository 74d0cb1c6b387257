"""MONAI MetaTensor inputs, targets and masks: the same losses and gradients as plain tensors, on every path.

MetaTensor's ``__torch_function__`` copies metadata into every result; the core reads a MetaTensor as a
plain view once, where inputs and targets come in (phidice.core.checks.plain_tensor).
"""

from __future__ import annotations

import pytest
import torch

import phidice
from phidice import kernels
from phidice.core.checks import plain_tensor

monai_data = pytest.importorskip("monai.data")
MetaTensor = monai_data.MetaTensor

B, C, S = 3, 4, (10, 9)


def _batch(dtype=torch.float32):
    """A collated batch as MONAI's DataLoader gives it: MetaTensors with per-case metadata, is_batch=True."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for i in range(B):
        label = torch.randint(0, C, (1, *S), generator=g).float()
        if i == 1:
            label[label == 2] = 0  # unannotated in ANNOTATED (and an empty class for the plain losses)
        if i == 2:
            label[label == 1] = 0
        cases.append(
            {
                "image": MetaTensor(torch.randn(1, *S, generator=g), meta={"filename_or_obj": f"case{i}.nii.gz"}),
                "label": MetaTensor(label, meta={"filename_or_obj": f"label{i}.nii.gz"}),
            }
        )
    batch = monai_data.list_data_collate(cases)
    logits = torch.randn(B, C, *S, generator=g, dtype=dtype) * 2
    pred = MetaTensor(logits, meta=batch["image"].meta)
    pred.is_batch = True
    return pred, batch["label"]


ANNOTATED = torch.tensor([[True, True, True, True], [True, True, False, True], [True, False, True, True]])

# name -> (constructor, takes annotated, has a cross-entropy term, runs fused)
LOSSES = {
    "DiceLoss": (lambda f: phidice.DiceLoss(phi="BI", fused=f), False, False, True),
    "DiceLoss-I-no-bg": (lambda f: phidice.DiceLoss(phi="I", include_background=False, fused=f), False, False, True),
    "DiceCELoss": (lambda f: phidice.DiceCELoss(phi="BI", fused=f), False, True, True),
    "LeafDiceLoss": (lambda f: phidice.LeafDiceLoss(phi="BI", fused=f), True, False, True),
    "MarginalDiceLoss": (lambda f: phidice.MarginalDiceLoss(phi="I", fused=f), True, False, False),
    "LeafDiceCELoss": (lambda f: phidice.LeafDiceCELoss(phi="I", fused=f), True, True, True),
    "MarginalDiceCELoss-no-bg": (
        lambda f: phidice.MarginalDiceCELoss(phi="I", include_background=False, fused=f),
        True,
        True,
        True,
    ),
}
PATHS = [("reference", "labels"), ("reference", "onehot"), ("numba", "labels"), ("torch", "labels")]


def _run(loss, pred, target, annotated):
    x = (
        pred.detach().clone().requires_grad_()
        if type(pred) is torch.Tensor
        else MetaTensor(pred.as_tensor().detach().clone(), meta=pred.meta).requires_grad_()
    )
    value = loss(x, target) if annotated is None else loss(x, target, annotated)
    value.backward()
    return value, x.grad


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("path,target_form", PATHS, ids=[f"{p}-{t}" for p, t in PATHS])
def test_metatensor_equals_plain(name, path, target_form):
    make, partial, with_ce, fusable = LOSSES[name]
    if path == "numba" and not kernels.cpu.available():
        pytest.skip("numba is not installed")
    if path != "reference" and not fusable:
        pytest.skip(f"{name} runs the reference path only")
    pred, label = _batch()
    if target_form == "onehot":
        label = MetaTensor(
            torch.nn.functional.one_hot(label.as_tensor()[:, 0].long(), C).movedim(-1, 1).float(), meta=label.meta
        )
    loss = make(False if path == "reference" else True)  # fused=True: fails unless the fused path runs
    annotated = ANNOTATED if partial else None
    previous = kernels.set_backend(None if path == "reference" else path)
    try:
        plain_value, plain_grad = _run(loss, pred.as_tensor(), label.as_tensor(), annotated)
        meta_value, meta_grad = _run(loss, pred, label, annotated)
    finally:
        kernels.set_backend(previous)
    torch.testing.assert_close(meta_value.as_subclass(torch.Tensor), plain_value, rtol=0, atol=0)
    torch.testing.assert_close(meta_grad.as_subclass(torch.Tensor), plain_grad, rtol=0, atol=0)
    assert torch.isfinite(meta_value) and meta_grad.abs().sum() > 0
    assert type(meta_value) is torch.Tensor  # every term computes on plain views: a plain loss comes back


def test_metatensor_mask_and_dice_gradient():
    pred, label = _batch(torch.float64)
    mask = MetaTensor((torch.rand(B, 1, *S, generator=torch.Generator().manual_seed(2)) > 0.3).double())
    got = phidice.dice_loss(pred, label, phi="BI", mask=mask)
    expected = phidice.dice_loss(pred.as_tensor(), label.as_tensor(), phi="BI", mask=mask.as_tensor())
    assert type(got) is torch.Tensor
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    probs = torch.softmax(pred.as_tensor(), 1)
    g_meta = phidice.dice_gradient(MetaTensor(probs, meta=pred.meta), label, phi="BI")
    g_plain = phidice.dice_gradient(probs, label.as_tensor(), phi="BI")
    assert type(g_meta.grad) is torch.Tensor
    torch.testing.assert_close(g_meta.grad, g_plain.grad, rtol=0, atol=0)


def test_plain_tensor_is_a_view_on_the_same_graph():
    leaf = MetaTensor(torch.randn(2, 3, 4), meta={"filename_or_obj": "x"}).requires_grad_()
    view = plain_tensor(leaf)
    assert type(view) is torch.Tensor and view.data_ptr() == leaf.data_ptr()
    (view * 2).sum().backward()
    torch.testing.assert_close(leaf.grad.as_subclass(torch.Tensor), torch.full((2, 3, 4), 2.0))
    t, p = torch.zeros(2), torch.nn.Parameter(torch.zeros(2))
    assert plain_tensor(t) is t and plain_tensor(p) is p and plain_tensor(None) is None
