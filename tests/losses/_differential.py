"""The differential property of the losses, shared by tests/losses/test_differential.py (reference, fused torch
and numba backends) and tests/kernels/triton_interpret_check.py (the Triton backend, in its own process).

One drawn case — a loss of the family, Φ, C, B, a 1–3-d shape, a dtype (fp64/fp32/fp16/bf16), ε (scalar or per
class), class weights, the target's form (labels, (B, 1, *S) labels, float/int/bool one-hot, soft map, an empty or
a full map), ``ignore_index``, a mask, ``annotated`` flags, and the logits (normal, ±1e4, all equal, with NaN/±Inf
sprinkled in) — is run on every path: the functional and the module form on the reference path, and the
functional form on each fused backend. Every path must give the same loss and gradient within the dtype's
tolerance, and a NaN wherever the softmax/sigmoid of the logits holds one.

Profiles: ``phidice-bounded`` (``make test``: few examples, derandomized, no database) and ``phidice-fuzz``
(``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``: ``PHIDICE_FUZZ_EXAMPLES`` examples, random, with the example database).
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import phidice
from phidice import kernels
from phidice.missing import functional as missing

PHIS = ("I", "CI", "BI", "BCI")
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
LOSSES = ("dice", "dice_ce", "tversky", "jaccard", "leaf", "marginal")
TARGETS = ("labels", "labels1", "onehot_float", "onehot_int", "onehot_bool", "soft")
IGNORE = 255
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "phidice-bounded", max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET
)
settings.register_profile(
    "phidice-fuzz",
    max_examples=int(os.environ.get("PHIDICE_FUZZ_EXAMPLES", "4000")),
    deadline=None,
    suppress_health_check=_QUIET,
)
PROFILE = "phidice-fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "phidice-bounded"


def tolerance(dtype) -> tuple[float, float]:
    """(loss, gradient) relative tolerance: every path activates in fp32 (fp64 kept); fp16/bf16 gradients are
    rounded to their dtype once on each path, so they may differ by an ulp of it."""
    return {
        torch.float64: (1e-9, 1e-9),
        torch.float32: (1e-5, 1e-5),
        torch.float16: (1e-5, 2e-3),
        torch.bfloat16: (1e-5, 1.6e-2),
    }[dtype]


MASKS = (None, "soft", "binary")


@st.composite
def cases(draw, losses=LOSSES, dtypes=DTYPES, masks=MASKS) -> dict:
    """One case: the options of the loss and the recipe of its tensors (built by :func:`tensors`); ``losses``,
    ``dtypes`` and ``masks`` narrow the draw to what a path takes (the Keras losses: no mask, float32)."""
    loss = draw(st.sampled_from(losses))
    activation = "softmax" if loss == "marginal" else draw(st.sampled_from(["softmax", "sigmoid"]))
    C = draw(st.integers(2 if (activation == "softmax" or loss in ("leaf", "marginal")) else 1, 4))
    case = dict(
        loss=loss,
        phi=draw(st.sampled_from(PHIS)),
        activation=activation,
        C=C,
        B=draw(st.integers(1, 3)),
        spatial=tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))),
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**31 - 1)),
        include_background=True if C == 1 else draw(st.booleans()),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])) if loss in ("dice", "tversky", "jaccard") else "mean",
    )
    per_class = st.tuples(*[st.sampled_from([0.0, 1e-5, 0.5, 3.0])] * C)
    case["eps"] = draw(st.one_of(st.sampled_from([0.0, 1e-5, 1.0, 10.0]), per_class))
    case["class_weights"] = draw(st.one_of(st.none(), st.tuples(*[st.sampled_from([0.5, 1.0, 2.0])] * C)))
    forms = [t for t in TARGETS if t != "soft" or loss in ("dice", "tversky", "jaccard")]
    case["target"] = draw(st.sampled_from(forms))
    case["fill"] = draw(st.sampled_from(["random", "random", "empty", "full"]))
    labels = case["target"] in ("labels", "labels1")
    case["ignore"] = labels and loss != "marginal" and draw(st.booleans())
    case["mask"] = draw(st.sampled_from(masks))
    case["logits"] = draw(st.sampled_from(["normal", "normal", "large", "extreme", "equal"]))
    case["specials"] = draw(st.lists(st.sampled_from(["nan", "+inf", "-inf"]), max_size=3))
    if loss in ("leaf", "marginal"):
        case["annotated"] = draw(
            st.lists(st.lists(st.booleans(), min_size=C, max_size=C), min_size=case["B"], max_size=case["B"])
        )
    if loss == "tversky":
        case["tversky"] = (
            draw(st.sampled_from([0.3, 0.5, 0.7])),
            draw(st.sampled_from([0.3, 0.5, 0.7])),
            draw(st.sampled_from([1.0, 0.75, 2.0])),
        )
    return case


def _labels(case, g) -> torch.Tensor:
    B, C, S = case["B"], case["C"], case["spatial"]
    upper = 2 if C == 1 else C
    if case["fill"] == "empty":
        return torch.zeros((B, *S), dtype=torch.long)
    if case["fill"] == "full":
        return torch.full((B, *S), upper - 1, dtype=torch.long)
    return torch.randint(0, upper, (B, *S), generator=g)


def _annotated(case, labels) -> torch.Tensor | None:
    """(B, C) flags with the background and one class at least annotated; unannotated classes' voxels → 0."""
    if "annotated" not in case:
        return None
    a = torch.tensor(case["annotated"], dtype=torch.bool)
    a[:, 0] = True
    for b in range(a.shape[0]):
        for c in range(1, a.shape[1]):
            if not a[b, c]:
                labels[b][labels[b] == c] = 0
    return a


def _logits(case, g) -> torch.Tensor:
    B, C, S = case["B"], case["C"], case["spatial"]
    kind = case["logits"]
    if kind == "equal":
        x = torch.zeros((B, C, *S), dtype=torch.float64)
    else:
        x = torch.randn((B, C, *S), generator=g, dtype=torch.float64)
        x = x * {"normal": 2.0, "large": 30.0, "extreme": 1.0}[kind]
        if kind == "extreme":
            x = torch.sign(x) * 1e4
    first = 0 if case["include_background"] or C == 1 else 1  # a special on a dropped sigmoid channel is unseen
    for s in case["specials"]:
        index = (
            int(torch.randint(0, B, (1,), generator=g)),
            int(torch.randint(first, C, (1,), generator=g)),
            *(int(torch.randint(0, n, (1,), generator=g)) for n in S),
        )
        x[index] = {"nan": float("nan"), "+inf": float("inf"), "-inf": float("-inf")}[s]
    return x.to(case["dtype"])


def tensors(case) -> dict:
    """x (logits), y (target), mask, annotated of a case; deterministic in its seed."""
    g = torch.Generator().manual_seed(case["seed"])
    B, C, S = case["B"], case["C"], case["spatial"]
    labels = _labels(case, g)
    annotated = _annotated(case, labels)
    x = _logits(case, g)
    if case["ignore"]:
        labels = labels.masked_fill(torch.rand(labels.shape, generator=g) < 0.2, IGNORE)
    form = case["target"]
    if form == "labels":
        y = labels
    elif form == "labels1":
        y = labels.unsqueeze(1)
    elif form == "soft":
        y = torch.rand((B, C, *S), generator=g)
    else:
        onehot = labels.unsqueeze(1) if C == 1 else torch.nn.functional.one_hot(labels, C).movedim(-1, 1)
        y = {"onehot_float": onehot.float(), "onehot_int": onehot, "onehot_bool": onehot.bool()}[form]
    mask = None
    if case["mask"] == "soft":
        mask = torch.rand((B, 1, *S), generator=g)
    elif case["mask"] == "binary":
        mask = (torch.rand((B, 1, *S), generator=g) < 0.7).float()
    return dict(x=x, y=y, mask=mask, annotated=annotated)


def options(case) -> dict:
    opts = dict(
        phi=case["phi"],
        eps=case["eps"],
        activation=case["activation"],
        class_weights=case["class_weights"],
        include_background=case["include_background"],
        reduction=case["reduction"],
    )
    if case["ignore"]:
        opts["ignore_index"] = IGNORE
    return opts


def functional(case, x, t, fused):
    opts = dict(options(case), fused=fused)
    loss = case["loss"]
    if loss == "dice":
        return phidice.dice_loss(x, t["y"], mask=t["mask"], **opts)
    if loss == "dice_ce":
        return phidice.dice_ce_loss(x, t["y"], mask=t["mask"], **opts)
    if loss == "tversky":
        a, b, gamma = case["tversky"]
        return phidice.tversky_loss(x, t["y"], alpha=a, beta=b, gamma=gamma, mask=t["mask"], **opts)
    if loss == "jaccard":
        return phidice.jaccard_loss(x, t["y"], mask=t["mask"], **opts)
    form = missing.leaf_dice_loss if loss == "leaf" else missing.marginal_dice_loss
    return form(x, t["y"], t["annotated"], mask=t["mask"], **opts)


def module(case, x, t):
    opts = dict(options(case), fused=False)
    phi, eps = opts.pop("phi"), opts.pop("eps")
    loss = case["loss"]
    if loss == "tversky":
        return phidice.TverskyLoss(*case["tversky"], phi=phi, eps=eps, **opts)(x, t["y"], t["mask"])
    cls = {
        "dice": phidice.DiceLoss,
        "dice_ce": phidice.DiceCELoss,
        "jaccard": phidice.JaccardLoss,
        "leaf": phidice.LeafDiceLoss,
        "marginal": phidice.MarginalDiceLoss,
    }[loss]
    if loss in ("leaf", "marginal"):
        return cls(phi=phi, eps=eps, **opts)(x, t["y"], t["annotated"], t["mask"])
    return cls(phi=phi, eps=eps, **opts)(x, t["y"], t["mask"])


def evaluate(run, x):
    """(loss, ∂Σloss/∂x) of one path."""
    xr = x.clone().requires_grad_()
    loss = run(xr)
    loss.sum().backward()
    return loss.detach(), xr.grad


def runnable(backend: str, dtype) -> bool:
    try:
        kernels.set_backend(backend)
        kernels.select_backend(torch.device("cpu"), dtype)
        return True
    except ValueError:  # numba runs float32 only
        return False
    finally:
        kernels.set_backend(None)


def paths(case, t, backends) -> dict:
    """{path: (loss, grad)} over the reference path (functional and module) and each fused backend."""
    x = t["x"]
    out = {
        "reference": evaluate(lambda z: functional(case, z, t, False), x),
        "module": evaluate(lambda z: module(case, z, t), x),
    }
    for backend in backends:
        if not runnable(backend, x.dtype):
            continue
        kernels.set_backend(backend)
        try:
            out[f"fused-{backend}"] = evaluate(lambda z: functional(case, z, t, "auto"), x)
        finally:
            kernels.set_backend(None)
    return out


def expect_nan(case, x) -> bool:
    """Whether the activation of the logits holds a NaN (NaN, a +Inf under softmax, an all −Inf voxel)."""
    z = x.double()
    p = torch.softmax(z, 1) if case["activation"] == "softmax" else torch.sigmoid(z)
    return bool(torch.isnan(p).any())


_seen = {"cases": 0, "nan": 0}


def _progress(nan: bool) -> None:
    """With ``PHIDICE_FUZZ_PROGRESS=<file>``, the number of cases checked so far (of them with a NaN activation)
    is written there every 100 cases, so that a long run cut short still says how far it got."""
    _seen["cases"] += 1
    _seen["nan"] += nan
    path = os.environ.get("PHIDICE_FUZZ_PROGRESS")
    if path and _seen["cases"] % 100 == 0:
        with open(path, "a") as f:
            f.write(f"{_seen['cases']} cases checked ({_seen['nan']} with a NaN activation)\n")


def check_case(case, backends) -> None:
    """The property: every path agrees with the reference path; NaN activations give a NaN loss everywhere."""
    note(repr(case))
    t = tensors(case)
    results = paths(case, t, backends)
    nan = expect_nan(case, t["x"])
    _progress(nan)
    for name, (loss, grad) in results.items():
        assert_agrees(name, case, t["x"], nan, (loss, grad), results["reference"])


def assert_agrees(name, case, x, nan, got, reference) -> None:
    """One path's (loss, gradient) against the reference path's on the logits ``x``: NaN where the activation
    holds one (``nan``), else equal within the dtype's tolerance."""
    (loss, grad), (ref_loss, ref_grad) = got, reference
    assert loss.dtype == ref_loss.dtype and grad.dtype == x.dtype, name
    if nan:
        assert torch.isnan(loss.sum()), f"{name}: NaN in the activation, but the loss is {loss}"
        assert torch.isnan(grad).any(), f"{name}: NaN in the activation, none in the gradient"
        return
    # a Dice is bounded; a cross-entropy is +Inf where an infinite logit gives the label probability 0
    finite = torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert finite or (case["loss"] == "dice_ce" and not torch.isnan(loss).any()), f"{name}: {loss}"
    rl, rg = tolerance(x.dtype)
    atol = rl * max(float(ref_loss.nan_to_num(posinf=0.0).abs().max()), 1e-3)
    torch.testing.assert_close(loss, ref_loss, rtol=rl, atol=atol, msg=lambda m: f"{name} loss: {m}")
    # ∂L/∂z = p·(g − Σ p_k g_k) cancels where the activation saturates: its rounding error is relative to
    # ∂L/∂p (~1/voxels for these losses), not to a tiny ∂L/∂z
    scale = max(float(ref_grad.nan_to_num().abs().max()), 1.0 / x[:, 0].numel())
    torch.testing.assert_close(
        grad.double(),
        ref_grad.double(),
        rtol=rg,
        atol=rg * scale,
        equal_nan=not finite,
        msg=lambda m: f"{name} gradient: {m}",
    )


def run_bounded(max_examples: int, backends) -> None:
    """Run the property outside pytest (the Triton interpreter's process) for ``max_examples`` cases."""

    @settings(settings.get_profile(PROFILE), max_examples=max_examples)
    @given(cases())
    def prop(case):
        check_case(case, backends)

    prop()
