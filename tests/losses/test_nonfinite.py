"""Non-finite logits never look like a good fit: NaN (or a +Inf that makes the softmax NaN) gives a NaN loss on
every path — reference, each fused CPU backend — for every Φ and every loss of the family; −Inf is a probability
of 0 and gives the same finite loss everywhere. With ``check_finite=True`` the error says where.

(Triton runs the same cases in tests/kernels/triton_interpret_check.py; Keras in tests/keras; the drawn cases of
tests/losses/test_differential.py go further.)
"""

from __future__ import annotations

import math

import pytest
import torch

import phidice
from phidice import kernels
from phidice.kernels import cpu

PHIS = ("I", "CI", "BI", "BCI")
NAN, INF = float("nan"), float("inf")


def paths():
    """(name, fused, backend) of every path present here."""
    found = [("reference", False, None), ("fused-torch", True, "torch")]
    if cpu.available():
        found.append(("fused-numba", True, "numba"))
    return found


def run(make_loss, x, y, *, fused, backend, annotated=None):
    """(loss, ∂loss/∂x) of one path."""
    previous = kernels.set_backend(backend)
    try:
        xr = x.clone().requires_grad_()
        loss = make_loss(fused)(xr, y) if annotated is None else make_loss(fused)(xr, y, annotated)
        loss.sum().backward()
        return loss.detach(), xr.grad
    finally:
        kernels.set_backend(previous)


LOSSES = {
    "DiceLoss": lambda phi, act: lambda f: phidice.DiceLoss(phi=phi, activation=act, fused=f),
    "DiceCELoss": lambda phi, act: lambda f: phidice.DiceCELoss(phi=phi, activation=act, fused=f),
    "TverskyLoss": lambda phi, act: (
        lambda f: phidice.TverskyLoss(phi=phi, alpha=0.3, beta=0.7, gamma=0.75, activation=act, fused=f)
    ),
    "JaccardLoss": lambda phi, act: lambda f: phidice.JaccardLoss(phi=phi, activation=act, fused=f),
    "TverskyCELoss": lambda phi, act: lambda f: phidice.TverskyCELoss(phi=phi, activation=act, fused=f),
    "JaccardCELoss": lambda phi, act: lambda f: phidice.JaccardCELoss(phi=phi, activation=act, fused=f),
    "LeafDiceLoss": lambda phi, act: lambda f: phidice.LeafDiceLoss(phi=phi, activation=act, fused=f),
    "LeafDiceCELoss": lambda phi, act: lambda f: phidice.LeafDiceCELoss(phi=phi, activation=act, fused=f),
    "MarginalDiceLoss": lambda phi, act: lambda f: phidice.MarginalDiceLoss(phi=phi, fused=f and "auto"),
    "MarginalDiceCELoss": lambda phi, act: lambda f: phidice.MarginalDiceCELoss(phi=phi, fused=f and "auto"),
}
PARTIAL = ("LeafDiceLoss", "LeafDiceCELoss", "MarginalDiceLoss", "MarginalDiceCELoss")


def batch(C: int = 3, value: float | None = None, where=(0, 1, 1, 2)):
    x = torch.randn(2, C, 5, 6) * 2
    y = torch.randint(0, max(C, 2), (2, 5, 6))
    y[1] = 0  # an image with only background: Φ = I has empty (b, c) entries
    if value is not None:
        x[where] = value
    return x, y


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("phi", PHIS)
def test_nan_logit_gives_nan_loss_on_every_path(name, phi):
    """One NaN voxel: a NaN loss (0.0 before: a NaN denominator read as the 0/0 'perfect' case) and NaN gradients."""
    x, y = batch(value=NAN)
    annotated = None
    if name in PARTIAL:  # class 2 unannotated in image 0: its voxels are labelled background there
        annotated = torch.tensor([[True, True, False], [True, True, True]])
        y[0][y[0] == 2] = 0
    for path, fused, backend in paths():
        loss, grad = run(LOSSES[name](phi, "softmax"), x, y, fused=fused, backend=backend, annotated=annotated)
        assert torch.isnan(loss).all(), f"{name} phi={phi} on {path}: {loss}"
        assert torch.isnan(grad).any(), f"{name} phi={phi} on {path}: a NaN logit left no NaN in the gradient"


@pytest.mark.parametrize("C", [2, 3])  # C = 2 has its own numba kernel
@pytest.mark.parametrize("phi", PHIS)
def test_positive_inf_makes_the_softmax_and_the_loss_nan(phi, C):
    """+Inf − max = ∞ − ∞: the softmax is NaN there, on the kernels as in torch.softmax."""
    x, y = batch(C, INF)
    for path, fused, backend in paths():
        loss, grad = run(lambda f: phidice.DiceLoss(phi=phi, fused=f), x, y, fused=fused, backend=backend)
        assert torch.isnan(loss), f"phi={phi} C={C} on {path}: {loss}"


@pytest.mark.parametrize("C", [2, 3])
@pytest.mark.parametrize("phi", PHIS)
def test_negative_inf_is_a_zero_probability_and_the_same_finite_loss(phi, C):
    """−Inf is a valid logit (probability 0): finite loss and gradient, equal on every path."""
    x, y = batch(C, -INF, where=(0, 1, slice(0, 3)))
    results = [
        run(lambda f: phidice.DiceLoss(phi=phi, fused=f), x, y, fused=fused, backend=backend)
        for _, fused, backend in paths()
    ]
    (l0, g0), *others = results
    assert torch.isfinite(l0) and torch.isfinite(g0).all()
    assert (g0[0, 1, :3] == 0).all()  # no gradient through a zero probability
    for (l1, g1), (path, _, _) in zip(others, paths()[1:]):
        torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6, msg=f"{path}")
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7, msg=f"{path}")


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_sigmoid_nan_is_nan_and_infinities_are_probabilities(value, C):
    """Under a sigmoid both infinities are valid (probabilities 1 and 0): finite and equal; NaN stays NaN."""
    x, y = batch(C, value, where=(0, 0, 1, 2))
    y = y.clamp_max(1) if C == 1 else y
    results = [
        run(lambda f: phidice.DiceLoss(phi="BI", activation="sigmoid", fused=f), x, y, fused=fused, backend=backend)
        for _, fused, backend in paths()
    ]
    (l0, g0), *others = results
    if math.isnan(value):
        assert all(torch.isnan(loss) for loss, _ in results)
        return
    assert torch.isfinite(l0) and torch.isfinite(g0).all()
    for l1, g1 in others:
        torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("phi", PHIS)
def test_nan_probabilities_reach_dice_gradient_and_reduction_none(phi):
    """The closed-form Eq. 4 and the per-φ losses carry the NaN too (they read 0/0 as 'perfect' before)."""
    x, y = batch(value=NAN)
    probs = torch.softmax(x, 1)
    g = phidice.dice_gradient(probs, y, phi=phi)
    assert torch.isnan(g.loss) and torch.isnan(g.grad).any()
    per_phi = phidice.dice_loss(x, y, phi=phi, reduction="none")
    assert torch.isnan(per_phi).any()


def test_empty_maps_keep_their_conventions():
    """What the fix leaves alone: ε = 0 with nothing predicted nor labelled is still 0/0 = a perfect score (0 loss),
    not NaN — for exact-zero denominators only."""
    x = torch.full((1, 2, 4, 4), -1e4)
    x[:, 0] = 1e4  # all background, predicted so
    y = torch.zeros(1, 4, 4, dtype=torch.long)
    for path, fused, backend in paths():
        loss, grad = run(
            lambda f: phidice.DiceLoss(phi="I", eps=0.0, include_background=False, fused=f),
            x,
            y,
            fused=fused,
            backend=backend,
        )
        assert loss == 0 and torch.isfinite(grad).all(), path


def test_check_finite_names_the_batch_item_and_channel():
    x, y = batch(value=NAN, where=(1, 2, 3, 4))
    with pytest.raises(
        ValueError,
        match=r"input contains NaN or Inf \(check_finite=True\): 1 NaN of 180 values; "
        r"the first at batch item 1, channel 2, voxel \(3, 4\)",
    ):
        phidice.dice_loss(x, y, check_finite=True)
    x[0, 0, 0, 0] = -INF
    with pytest.raises(ValueError, match=r"1 NaN, 1 -Inf of 180 values; the first at batch item 0, channel 0"):
        phidice.DiceLoss(check_finite=True)(x, y)
    target = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).float()
    target[0, 1, 2, 2] = INF
    with pytest.raises(
        ValueError,
        match=r"target contains NaN or Inf \(check_finite=True\): 1 \+Inf .* batch item 0, "
        r"channel 1, voxel \(2, 2\)",
    ):
        phidice.dice_loss(torch.randn(2, 3, 5, 6), target, check_finite=True)


def test_check_finite_false_reads_nothing_back(monkeypatch):
    """The default path adds no host synchronisation for finiteness: torch.isfinite is never called."""
    calls = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: calls.append(1) or real(t))
    x, y = batch(value=NAN)
    for _, fused, backend in paths():
        run(lambda f: phidice.DiceLoss(phi="BI", fused=f), x, y, fused=fused, backend=backend)
    assert calls == []


class HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the operations that read a tensor value back to the host (a synchronisation on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("fused,backend", [(False, None), (True, "torch")])
def test_nan_handling_adds_no_host_synchronisation(fused, backend):
    """NaN out costs no read-back: with validate_args=False no value is read at all, and the default checks read
    as many values with a NaN in the logits as without; check_finite=True is the one check that reads."""
    x, y = batch(value=NAN)
    counts = {}
    for name, logits, options in (
        ("finite", batch()[0], {}),
        ("nan", x, {}),
        ("nan-novalidate", x, {"validate_args": False}),
        ("check_finite", x, {"check_finite": True}),
    ):
        previous = kernels.set_backend(backend)
        try:
            with HostReads() as reads:
                try:
                    phidice.dice_loss(logits.double().requires_grad_(), y, phi="BI", fused=fused, **options).backward()
                except ValueError:
                    pass
        finally:
            kernels.set_backend(previous)
        counts[name] = reads.count
    assert counts["nan-novalidate"] == 0
    assert counts["nan"] == counts["finite"]
    assert counts["check_finite"] > 0
