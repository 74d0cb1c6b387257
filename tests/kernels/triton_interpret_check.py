"""Run by test_triton.py in a subprocess with TRITON_INTERPRET=1: the Triton kernels on CPU tensors.

The interpreter must be switched on before the kernels are defined, hence a fresh process. Exits
non-zero (an AssertionError) on the first mismatch against the reference path of the core.
"""

import os
import sys
from pathlib import Path

assert os.environ.get("TRITON_INTERPRET") == "1"
os.environ["PHIDICE_FUSED_BACKEND"] = "triton"

import torch

import phidice
from phidice import kernels
from phidice.kernels import triton_dice
from phidice.kernels.function import FusedDiceStats

torch.manual_seed(0)
assert kernels.select_backend(torch.device("cpu"), torch.float32)[0] == "triton"


def compare(x, y, dtype, **kw):
    x = x.to(dtype).requires_grad_()
    l1 = phidice.dice_loss(x, y, fused=True, **kw)
    l0 = phidice.dice_loss(x, y, fused=False, **kw)
    (g1,) = torch.autograd.grad(l1.sum(), x)
    (g0,) = torch.autograd.grad(l0.sum(), x)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(l1, l0, rtol=tol, atol=tol * float(l0.detach().abs().max()))
    torch.testing.assert_close(g1, g0, rtol=tol, atol=tol * float(g0.abs().max()))
    assert g1.dtype == dtype


for dtype in (torch.float32, torch.float64):
    for C in (3, 21):  # 21 > BLOCK_C: several class chunks, online softmax normaliser
        x = torch.randn(2, C, 5, 7, 3) * 3
        y = torch.randint(0, C, (2, 5, 7, 3))
        y[0, 0] = 99
        mask = torch.rand(2, 1, 5, 7, 3)
        for phi in ("I", "BCI"):
            compare(x, y, dtype, phi=phi, ignore_index=99, mask=mask, include_background=False, eps=[1.0] * C)
    for C in (1, 2):
        x = torch.randn(1, C, 67) * 2
        y = torch.randint(0, 2 if C == 1 else C, (1, 67))
        compare(x, y, dtype, phi="CI", activation="sigmoid")

# extreme logits and empty maps stay finite
x = (torch.randint(-1, 2, (2, 4, 9, 9)).float() * 1e4).requires_grad_()
loss = phidice.dice_loss(x, torch.zeros(2, 9, 9, dtype=torch.long), fused=True, include_background=False)
loss.backward()
assert torch.isfinite(loss) and torch.isfinite(x.grad).all()

# bf16 logits: fp32 arithmetic, bf16 gradient
xb = (torch.randn(2, 3, 33) * 2).to(torch.bfloat16).requires_grad_()
yb = torch.randint(0, 3, (2, 33))
l1 = phidice.dice_loss(xb, yb, fused=True)
l0 = phidice.dice_loss(xb, yb, fused=False)
l1.backward()
assert xb.grad.dtype == torch.bfloat16 and torch.isfinite(xb.grad.float()).all()
torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)

# gradcheck of the Function on the Triton backend
for activation, C in (("softmax", 3), ("sigmoid", 1)):
    x = torch.randn(2, C, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2 if C == 1 else C, (2, 5))
    m = torch.rand(2, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: FusedDiceStats.apply(z, y, m, activation, triton_dice)[:2], (x,), eps=1e-6, atol=1e-8
    )
# non-finite logits: NaN (and +Inf under a softmax) give NaN, −Inf the reference's finite loss, every Φ
for C, activation in ((3, "softmax"), (2, "softmax"), (3, "sigmoid")):
    for value in (float("nan"), float("inf"), float("-inf")):
        x = torch.randn(2, C, 5, 6)
        x[0, 1, 1, 2] = value
        y = torch.randint(0, C, (2, 5, 6))
        for phi in ("I", "BCI"):
            xs = [x.clone().requires_grad_() for _ in range(2)]
            l1, l0 = (
                phidice.dice_loss(z, y, phi=phi, activation=activation, fused=f) for z, f in zip(xs, (True, False))
            )
            (l1 + l0).backward()
            if value != value or (value > 0 and activation == "softmax"):
                assert torch.isnan(l1) and torch.isnan(l0), (C, activation, value, phi, l1, l0)
            else:
                torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-5, atol=1e-7)

# second derivatives on the Triton backend equal the reference path's (float64)
x = torch.randn(2, 3, 3, 2, dtype=torch.float64)
y = torch.randint(0, 3, (2, 3, 2))
H1, H0 = (
    torch.autograd.functional.hessian(lambda z: phidice.dice_loss(z, y, phi="BI", fused=f), x) for f in (True, False)
)
assert H0.abs().max() > 0
torch.testing.assert_close(H1, H0, rtol=1e-10, atol=1e-12)

# the drawn differential cases of tests/losses/test_differential.py, with Triton as the fused backend
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))
import _differential

_differential.run_bounded(max_examples=int(os.environ.get("PHIDICE_TRITON_EXAMPLES", "15")), backends=("triton",))
print("TRITON-INTERPRET-OK")
