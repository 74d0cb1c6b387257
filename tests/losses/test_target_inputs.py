"""What the losses accept as targets (every reasonable dtype and layout, on every path), what they refuse and
with which message, and the gradients beyond the first: double backward and torch.func on the fused path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import phidice
from phidice import kernels
from phidice.kernels import cpu

BACKENDS = ["torch"] + (["numba"] if cpu.available() else [])


def _targets(y, C):
    onehot = F.one_hot(y, C).movedim(-1, 1)
    return {
        "int64 labels": y,
        "int64 labels (B, 1)": y[:, None],
        "uint8 labels": y.to(torch.uint8),
        "uint8 labels (B, 1)": y[:, None].to(torch.uint8),
        "int32 labels": y.int(),
        "float labels (B, 1)": y[:, None].float(),
        "int64 one-hot (F.one_hot)": onehot,
        "uint8 one-hot": onehot.to(torch.uint8),
        "bool one-hot": onehot.bool(),
        "float one-hot": onehot.float(),
        "float16 one-hot": onehot.half(),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("phi", ["I", "BI"])
def test_every_target_form_gives_the_same_loss_and_gradient(phi, backend):
    x = torch.randn(2, 3, 5, 4)
    y = torch.randint(0, 3, (2, 5, 4))
    previous = kernels.set_backend(backend)
    try:
        results = {}
        for name, target in _targets(y, 3).items():
            for fused in ("auto", False):
                xr = x.clone().requires_grad_()
                loss = phidice.dice_loss(xr, target, phi=phi, fused=fused)
                loss.backward()
                results[name, fused] = (loss.detach(), xr.grad)
    finally:
        kernels.set_backend(previous)
    l0, g0 = results["int64 labels", False]
    for key, (loss, grad) in results.items():
        torch.testing.assert_close(loss, l0, rtol=1e-5, atol=1e-6, msg=str(key))
        torch.testing.assert_close(grad, g0, rtol=1e-5, atol=1e-7, msg=str(key))


def test_binary_sigmoid_accepts_integer_and_bool_maps():
    x = torch.randn(2, 1, 6)
    y = torch.randint(0, 2, (2, 6))
    ref = phidice.dice_loss(x, y, activation="sigmoid")
    for target in (y[:, None], y[:, None].bool(), y[:, None].to(torch.uint8), y[:, None].float()):
        torch.testing.assert_close(phidice.dice_loss(x, target, activation="sigmoid"), ref)


def test_integer_one_hot_holding_labels_is_refused_naming_the_dtype_reading():
    x = torch.randn(2, 3, 5, 4)
    with pytest.raises(
        ValueError,
        match=r"target values must lie in \[0, 1\] \(one-hot or soft maps\); an integer "
        r"target of shape \(2, 3, 5, 4\) is read as a one-hot map .* labels have "
        r"shape \(B, \*spatial\) = \(2, 5, 4\)",
    ):
        phidice.dice_loss(x, torch.randint(0, 3, (2, 3, 5, 4)) * 2)


@pytest.mark.parametrize(
    "target",
    [
        torch.randint(0, 3, (2, 3, 5, 3)),
        torch.randint(0, 2, (2, 2, 5, 4)).bool(),
        torch.rand(2, 3, 4, 5),
        torch.randint(0, 3, (2, 5, 4, 1)).to(torch.uint8),
    ],
)
def test_a_shape_message_never_names_two_equal_shapes(target):
    x = torch.randn(2, 3, 5, 4)
    with pytest.raises(ValueError) as err:
        phidice.dice_loss(x, target)
    message = str(err.value)
    assert f"target shape {tuple(target.shape)} (dtype {target.dtype}) does not fit input shape (2, 3, 5, 4)" in message
    assert tuple(target.shape) != (2, 3, 5, 4)


def test_ignore_index_with_an_integer_one_hot_says_it_is_a_map():
    target = F.one_hot(torch.randint(0, 3, (2, 5, 4)), 3).movedim(-1, 1)
    with pytest.raises(ValueError, match=r"the target is a one-hot/soft map \(B, C, \*spatial\): pass mask="):
        phidice.dice_loss(torch.randn(2, 3, 5, 4), target, ignore_index=255)


def test_complex_target_names_the_dtype():
    with pytest.raises(TypeError, match="got dtype torch.complex64"):
        phidice.dice_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.complex64))


# ------------------------------------------------------------- second derivatives and torch.func


@pytest.mark.parametrize("backend", ["torch"])  # float64 runs the torch backend (numba: test_fused.py, fp32)
@pytest.mark.parametrize("activation,C", [("softmax", 3), ("softmax", 2), ("sigmoid", 1), ("sigmoid", 3)])
@pytest.mark.parametrize("phi", ["I", "BCI"])
def test_hessian_of_the_fused_path_equals_the_reference(phi, activation, C, backend):
    """torch.autograd.functional.hessian in float64: the fused path's equals the reference path's (it was 0)."""
    x = torch.randn(2, C, 2, 2, dtype=torch.float64)
    y = torch.randint(0, max(C, 2), (2, 2, 2))
    m = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    previous = kernels.set_backend(backend)
    try:
        H1, H0 = (
            torch.autograd.functional.hessian(
                lambda z: phidice.dice_loss(z, y, mask=m, phi=phi, activation=activation, fused=f), x
            )
            for f in (True, False)
        )
    finally:
        kernels.set_backend(previous)
    assert H0.abs().sum() > 0.01
    torch.testing.assert_close(H1, H0, rtol=1e-10, atol=1e-13)


def test_gradient_penalty_of_dice_ce_on_the_fused_path():
    """A gradient penalty ‖∂L/∂x‖² trained through: the same parameter gradient on both paths."""
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (2, 4, 4))
    grads = []
    for fused in (True, False):
        (g,) = torch.autograd.grad(phidice.dice_ce_loss(x, y, phi="BI", fused=fused), x, create_graph=True)
        grads.append(torch.autograd.grad(g.pow(2).sum(), x)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-14)


def test_torch_func_grad_and_vmap():
    """torch.func transforms work (fused='auto' takes the reference path under them); fused=True says why not."""
    from torch.func import grad, vmap

    x = torch.randn(4, 3, 5, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (4, 5, 3))
    g = grad(lambda z: phidice.dice_loss(z, y, phi="BI"))(x)
    xr = x.clone().requires_grad_()
    phidice.dice_loss(xr, y, phi="BI", fused=False).backward()
    torch.testing.assert_close(g, xr.grad)
    per_image = vmap(lambda z, t: phidice.dice_loss(z[None], t[None], phi="I"))(x, y)
    torch.testing.assert_close(
        per_image, torch.stack([phidice.dice_loss(x[i : i + 1], y[i : i + 1], phi="I") for i in range(4)])
    )
    with pytest.raises(
        ValueError,
        match=r"fused=True but the fused path does not apply: a torch.func transform "
        r"\(grad, vmap, jacrev, ...\) runs on the input",
    ):
        grad(lambda z: phidice.dice_loss(z, y, fused=True))(x)


# ------------------------------------------------------------- metrics


@pytest.mark.parametrize("threshold", [0.5, "argmax", None])
def test_metrics_refuse_non_finite_predictions(threshold):
    """A hard metric has no NaN to return for a NaN probability: a clear error instead of a silent count."""
    from phidice.metrics import DiceAccumulator, dice_score

    p = torch.rand(2, 3, 4, 4) if threshold is not None else (torch.rand(2, 3, 4, 4) > 0.5).float()
    p[1, 2, 0, 0] = float("nan")
    y = torch.randint(0, 3, (2, 4, 4))
    match = "pred contains NaN or Inf" if threshold is not None else "non-binary value nan"
    with pytest.raises(ValueError, match=match):
        dice_score(p, y, threshold=threshold)
    with pytest.raises(ValueError, match=match):
        DiceAccumulator(threshold=threshold).update(p, y)


def test_nan_in_a_target_map_or_a_mask_is_refused():
    """A NaN target value or mask value is bad input, not a NaN loss (the [0, 1] check let NaN through)."""
    x = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    target = F.one_hot(y, 3).movedim(-1, 1).float()
    target[0, 0, 0, 0] = float("nan")
    with pytest.raises(
        ValueError,
        match=r"target values must lie in \[0, 1\] \(one-hot or soft maps\) "
        r"\(it holds 1 NaN\)",
    ):
        phidice.dice_loss(x, target)
    mask = torch.ones(2, 4, 4)
    mask[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"mask values must lie in \[0, 1\] \(it holds 1 NaN\)"):
        phidice.DiceLoss()(x, y, mask)
