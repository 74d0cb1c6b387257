"""torch.compile(fullgraph=True) and torch.export through the fused custom ops (and the reference path).

Every case builds its loss *inside* the compiled function (the harder case: configs and modules are traced),
and compares the compiled value and gradient with eager ones. ``aot_eager`` runs the whole matrix (fast);
``inductor`` (which generates and compiles C++) a few cases, the rest under ``--runslow``.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import phidice
from phidice import kernels
from phidice.kernels import cpu

B, C, S = 2, 3, (6, 5)
BACKENDS = ["torch", "numba"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "numba" and not cpu.available():
        pytest.skip(f"numba kernels unavailable: {cpu._import_error}")
    previous = kernels.set_backend(request.param)
    torch._dynamo.reset()
    yield request.param
    kernels.set_backend(previous)
    torch._dynamo.reset()


def _data(seed=0, shape=(B, C, *S)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 2
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    y[0, 0, 0] = 0
    return x, y


def _one_hot(y, c=C):
    return torch.nn.functional.one_hot(y, c).movedim(-1, 1).float()


def _mask(seed=1):
    return (torch.rand(B, 1, *S, generator=torch.Generator().manual_seed(seed)) > 0.3).float()


ANNOTATED = torch.tensor([[True, True, False], [True, True, True]])


def _partial_labels(y):
    return y.masked_fill(y == 2, 0) * 1  # class 2 unannotated in sample 0 → background there (sample 1 too: fine)


# name → (loss built inside the compiled function, extra call arguments builder, target builder)
CASES = {
    "dice-I": (lambda: phidice.DiceLoss("I"), lambda y: (y,)),
    "dice-CI": (lambda: phidice.DiceLoss("CI", eps=[1e-5, 1.0, 2.0]), lambda y: (y,)),
    "dice-BI": (lambda: phidice.DiceLoss("BI", include_background=False), lambda y: (y,)),
    "dice-BCI": (lambda: phidice.DiceLoss("BCI", weighting="generalized"), lambda y: (y,)),
    "dice-BI-mask": (lambda: phidice.DiceLoss("BI"), lambda y: (y, _mask())),
    "dice-BI-onehot-mask": (lambda: phidice.DiceLoss("BI"), lambda y: (_one_hot(y), _mask())),
    "dice-I-onehot": (lambda: phidice.DiceLoss("I"), lambda y: (_one_hot(y),)),
    "dice-sigmoid": (lambda: phidice.DiceLoss("BI", activation="sigmoid"), lambda y: (_one_hot(y),)),
    "dice-ignore": (lambda: phidice.DiceLoss("I", ignore_index=2), lambda y: (y,)),
    "dicece": (lambda: phidice.DiceCELoss("BI"), lambda y: (y,)),
    "dicece-onehot-mask": (lambda: phidice.DiceCELoss("I"), lambda y: (_one_hot(y), _mask())),
    "tversky": (lambda: phidice.TverskyLoss(alpha=0.3, beta=0.7, phi="I"), lambda y: (y,)),
    "jaccard-mask": (lambda: phidice.JaccardLoss("BI"), lambda y: (y, _mask())),
    "leaf": (lambda: phidice.LeafDiceLoss("I"), lambda y: (_partial_labels(y), ANNOTATED)),
    "leaf-onehot": (lambda: phidice.LeafDiceLoss("BI"), lambda y: (_one_hot(_partial_labels(y)), ANNOTATED)),
    "leafce-mask": (lambda: phidice.LeafDiceCELoss("BI"), lambda y: (_partial_labels(y), ANNOTATED, _mask())),
    "marginal": (
        lambda: phidice.MarginalDiceLoss("I", include_background=False),
        lambda y: (_partial_labels(y), ANNOTATED),
    ),
    "marginalce-int-annotated": (
        lambda: phidice.MarginalDiceCELoss("BI"),
        lambda y: (_partial_labels(y), ANNOTATED.long()),
    ),
    "dicefocal": (lambda: phidice.DiceFocalLoss("I", gamma=2.0), lambda y: (y,)),
    "dicefocal-onehot-mask": (lambda: phidice.DiceFocalLoss("BI", alpha=0.25), lambda y: (_one_hot(y), _mask())),
    "leaffocal": (lambda: phidice.LeafDiceFocalLoss("BI"), lambda y: (_partial_labels(y), ANNOTATED)),
    "marginalfocal": (lambda: phidice.MarginalDiceFocalLoss("I"), lambda y: (_partial_labels(y), ANNOTATED)),
}


def _value_and_grad(fn, x, args):
    x = x.clone().requires_grad_()
    loss = fn(x, *args)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


def _check(name, backend_name, dtype=torch.float32, **compile_options):
    make, args_of = CASES[name]
    x, y = _data()
    x = x.to(dtype)
    args = args_of(y)

    def step(z, *a):
        return make()(z, *a)

    expected = _value_and_grad(step, x, args)
    got = _value_and_grad(torch.compile(step, fullgraph=True, **compile_options), x, args)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[0], expected[0], **tol)
    torch.testing.assert_close(got[1], expected[1], **tol)


@pytest.mark.parametrize("name", list(CASES))
def test_fullgraph_aot_eager_equals_eager(name):
    """Every loss on the default backend (numba for float32 where it is installed)."""
    torch._dynamo.reset()
    _check(name, "auto", backend="aot_eager")


@pytest.mark.parametrize("name", ["dice-BI-mask", "dicece", "leaf"])
def test_fullgraph_aot_eager_on_the_torch_backend(name):
    previous = kernels.set_backend("torch")
    try:
        torch._dynamo.reset()
        _check(name, "torch", backend="aot_eager")
    finally:
        kernels.set_backend(previous)
        torch._dynamo.reset()


def test_fused_op_is_in_the_graph(backend):
    """The fused path, not the reference one, runs inside the compiled graph."""
    seen = []

    def spy_backend(gm, inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    x, y = _data()
    torch.compile(lambda z, t: phidice.dice_loss(z, t, phi="BI"), backend=spy_backend, fullgraph=True)(x, y)
    assert any("phidice.fused_sums" in t for t in seen), seen


INDUCTOR_FAST = ["dice-BI-mask", "leaf"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in INDUCTOR_FAST else pytest.mark.slow) for n in CASES])
def test_fullgraph_inductor_equals_eager(name):
    torch._dynamo.reset()
    _check(name, "auto", backend="inductor")


def test_dynamic_shapes_compile_once(backend):
    """dynamic=True: other batch sizes and volumes run the same graph, with no recompilation per call (sizes
    of 1 are specialised by torch.compile, so none is used)."""
    fn = torch.compile(lambda z, t: phidice.DiceCELoss("BI")(z, t), backend="aot_eager", fullgraph=True, dynamic=True)
    counters.clear()
    for i, shape in enumerate([(2, 3, 6, 5), (3, 3, 7, 4), (2, 3, 9, 9), (2, 3, 6, 5), (4, 3, 5, 8)]):
        x, y = _data(i, shape)
        got = _value_and_grad(fn, x, (y,))
        expected = _value_and_grad(lambda z, t: phidice.DiceCELoss("BI")(z, t), x, (y,))
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])


EPS, ALPHA, BETA, LAMBDA, GAMMA = 1e-5, 0.3, 0.7, 0.5, 2.0  # globals: dynamic=True traces them as symbolic floats
FLOAT_OPTIONS = {
    "dice_loss": lambda z, t: phidice.dice_loss(z, t, phi="BI", eps=EPS),
    "DiceLoss": lambda z, t: phidice.DiceLoss("I", eps=EPS)(z, t),
    "DiceCELoss": lambda z, t: phidice.DiceCELoss("BI", eps=EPS, lambda_ce=LAMBDA)(z, t),
    "TverskyLoss": lambda z, t: phidice.TverskyLoss(phi="I", eps=EPS, alpha=ALPHA, beta=BETA, gamma=GAMMA)(z, t),
    "DiceFocalLoss": lambda z, t: phidice.DiceFocalLoss("I", eps=EPS, gamma=GAMMA, lambda_focal=LAMBDA)(z, t),
}


@pytest.mark.parametrize("name", list(FLOAT_OPTIONS))
def test_dynamic_true_with_float_options_of_the_caller(backend, name):
    """Options given as the caller's floats (a global, a closure): under dynamic=True dynamo makes them symbolic,
    and the config's checks must trace them (they used hasattr and math.isfinite, which it cannot)."""
    fn = FLOAT_OPTIONS[name]
    x, y = _data(3)
    got = _value_and_grad(torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=True), x, (y,))
    expected = _value_and_grad(fn, x, (y,))
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)


def test_no_recompilation_per_call(backend):
    """Static shapes: one compilation for many calls with new values (a module built outside, too)."""
    loss = phidice.DiceLoss("BI", eps=[1e-5, 1.0, 2.0])
    fn = torch.compile(loss, backend="aot_eager", fullgraph=True)
    counters.clear()
    for i in range(5):
        x, y = _data(i)
        fn(x.requires_grad_(), y).backward()
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert counters["aot_autograd"]["total"] == 1, dict(counters["aot_autograd"])


def test_bad_labels_still_raise_in_a_compiled_graph(backend):
    """The label range check runs inside the op, on the real labels, where traced Python checks cannot."""
    x, y = _data()
    y[1, 2, 3] = C
    fn = torch.compile(lambda z, t: phidice.dice_loss(z, t, phi="I"), backend="aot_eager", fullgraph=True)
    with pytest.raises(ValueError, match="target labels must lie in"):
        fn(x, y)


def test_float64_on_the_torch_path():
    previous = kernels.set_backend("torch")
    try:
        torch._dynamo.reset()
        _check("dice-BCI", "torch", torch.float64, backend="aot_eager")
    finally:
        kernels.set_backend(previous)
        torch._dynamo.reset()


def test_opcheck_custom_ops(backend):
    """torch.library.opcheck: schema, fake (meta) implementation, autograd registration, AOT dispatch."""
    x, y = _data()
    m = _mask().reshape(B, -1)
    lab = y.reshape(B, -1)
    for activation in ("softmax", "sigmoid"):
        for mask in (None, m):
            z = x.reshape(B, C, -1).clone().requires_grad_()
            torch.library.opcheck(torch.ops.phidice.fused_sums.default, (z, lab, mask, activation, backend, True))
            saved = torch.ops.phidice.fused_sums(z.detach(), lab, mask, activation, backend, False)[3]
            labels = saved if backend == "numba" else lab
            gi, gp = torch.randn(B, C), torch.randn(B, C)
            torch.library.opcheck(
                torch.ops.phidice.fused_sums_backward.default, (z.detach(), labels, mask, gi, gp, activation, backend)
            )


class _SegmentationWithLoss(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Conv2d(1, C, 3, padding=1)
        self.loss = phidice.DiceCELoss("BI", eps=[1e-5, 1.0, 1.0])

    def forward(self, image, labels):
        return self.loss(self.net(image), labels)


def test_torch_export_of_a_module_with_the_loss(backend):
    model = _SegmentationWithLoss()
    image = torch.randn(B, 1, *S)
    _, y = _data()
    exported = torch.export.export(model, (image, y))
    assert any("phidice.fused_sums" in str(n.target) for n in exported.graph.nodes)
    image2 = torch.randn(B, 1, *S)
    _, y2 = _data(3)
    torch.testing.assert_close(exported.module()(image2, y2), model(image2, y2), rtol=1e-5, atol=1e-6)
