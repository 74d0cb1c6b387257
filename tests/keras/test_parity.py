"""The Keras losses equal the PyTorch losses: values and gradients w.r.t. the logits, per back end, on every
case of ``_keras_cases`` (every Φ × ε form × option, labels and maps, 1D/2D/3D, both layouts, float16/bfloat16
logits); and bad input raises the same errors.

Tolerances (float32): values to 1e-5 (relative to the loss for values above 1); gradients to 1e-5 of the
largest gradient entry of the case. Float16/bfloat16 cases compare values only: both frameworks compute in
float32 from the same low-precision logits.
"""

from __future__ import annotations

import functools

import _keras_cases
import numpy as np
import pytest
from _keras_params import BACKENDS
from _keras_reference import keras_grad_as_torch, run_torch

TOL = 1e-5
CASES = _keras_cases.build_cases()
ERRORS = _keras_cases.build_error_cases()


@functools.cache
def reference(case_id: str) -> dict:
    case = next(c for c in CASES + ERRORS if c["id"] == case_id)
    return run_torch(case)


def _cases_of(loss, backend=None):
    cases = CASES if backend is None else _keras_cases.cases_for(backend, CASES)
    return [c for c in cases if c["loss"] == loss]


def test_cases_are_valid_for_pytorch():
    """Every value case runs in PyTorch (a case both frameworks refuse would compare nothing)."""
    failed = [(c["id"], reference(c["id"])["error"]) for c in CASES if "error" in reference(c["id"])]
    assert not failed, failed[:5]


def test_cases_cover_the_options():
    """The cases every back end runs (JAX's core set) meet, for DiceLoss, every option value under every Φ, and
    for each loss every Φ, ε form, layout and precision."""
    core = _keras_cases.cases_for("jax", CASES)
    seen = {}
    for c in core:
        for key, value in {**c["options"], **c["keras_options"], "dtype": c["dtype"]}.items():
            seen.setdefault((c["loss"], c["options"]["phi"], key), set()).add(repr(value))
    for phi in _keras_cases.PHIS:
        dice = {k[2]: v for k, v in seen.items() if k[:2] == ("DiceLoss", phi)}
        assert dice["activation"] == {"'softmax'", "'sigmoid'", "None"}, phi
        assert {"255", "-1"} <= dice["ignore_index"], phi
        assert {"'sum'", "'none'"} <= dice["reduction"], phi
        for key in ("eps", "eps_nr", "eps_dr", "eps_empty", "class_weights", "squared", "empty", "include_background"):
            assert key in dice, (phi, key)
        if phi in ("CI", "BCI"):
            assert dice["weighting"] == {"'generalized'", "'generalized_simple'"}, phi
    for loss in _keras_cases.LOSSES:
        mine = {}
        for k, v in seen.items():
            if k[0] == loss:
                mine.setdefault(k[2], set()).update(v)
        assert {c["options"]["phi"] for c in core if c["loss"] == loss} == set(_keras_cases.PHIS)
        assert mine["data_format"] == {"'channels_last'", "'channels_first'"}, loss
        assert mine["dtype"] == {"'float32'", "'float16'", "'bfloat16'"}, loss
        forms = {k: v for k, v in mine.items() if k.startswith("eps")}
        assert set(forms) == {"eps", "eps_nr", "eps_dr", "eps_empty"}, loss
    dims = {c["x"].ndim - 2 for c in core}
    assert dims == {1, 2, 3}


# a Φ that sums over the classes where the case's does not (and back), and one that sums over the batch
CLASS_PARTNER = {"I": "CI", "CI": "I", "BI": "BCI", "BCI": "BI"}
BATCH_PARTNER = {"I": "BI", "BI": "I"}  # CI and BCI coincide for softmax with every class scored: not a test


def test_cases_discriminate_phi():
    """The data make Φ matter: on each float32 Dice case with several scored classes, summing over the classes
    or the batch where the case's Φ does not (or not where it does) moves the loss by more than twice the
    tolerance — the frameworks agree to ~1e-7 — so a Keras loss that got Φ wrong could not pass."""
    import torch

    import phidice

    def value(case, phi):
        loss = phidice.DiceLoss(**{**case["options"], "phi": phi})
        return float(loss(torch.tensor(case["x_t"]), torch.as_tensor(case["y_t"])))

    checked = 0
    for c in _cases_of("DiceLoss"):
        o = c["options"]
        C = c["x_t"].shape[1] - (0 if o.get("include_background", True) else 1)
        if (
            C < 2
            or o.get("reduction") == "none"
            or o.get("weighting")
            or c["dtype"] != "float32"
            or c.get("nonfinite")
            or c.get("int_map")
        ):
            continue
        own = value(c, o["phi"])
        for partner in (CLASS_PARTNER[o["phi"]], BATCH_PARTNER.get(o["phi"])):
            if partner is not None:
                assert abs(value(c, partner) - own) > 2 * TOL, (c["id"], partner)
        checked += 1
    assert checked > 30


def _agree(have, want) -> bool:
    """Within TOL where PyTorch's value is finite; the same NaN or ±Inf where it is not (non-finite logits)."""
    finite = np.isfinite(want)
    with np.errstate(invalid="ignore"):  # ∞ − ∞ where both are +Inf: judged by `same`
        close = np.abs(have - want) <= TOL * np.maximum(1.0, np.abs(np.where(finite, want, 0.0)))
    same = (np.isnan(want) & np.isnan(have)) | (have == want)
    return bool(np.all(np.where(finite, close, same)))


def test_nonfinite_cases_exist_for_every_loss_and_phi():
    cases = [c for c in CASES if c.get("nonfinite")]
    assert {(c["loss"], c["options"]["phi"], c["nonfinite"]) for c in cases} == {
        (loss, phi, name) for loss in _keras_cases.LOSSES for phi in _keras_cases.PHIS for name in _keras_cases.SPECIALS
    }


def test_integer_map_cases_exist_for_every_loss():
    assert {(c["loss"], c["int_map"]) for c in CASES if c.get("int_map")} == {
        (loss, d) for loss in _keras_cases.LOSSES for d in ("int64", "uint8")
    }


@pytest.mark.parametrize("loss", _keras_cases.LOSSES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_values_match_pytorch(keras_run, backend, loss):
    got = keras_run(backend)["cases"]
    bad = []
    for case in _cases_of(loss, backend):
        ref, out = reference(case["id"]), got[case["id"]]
        if "error" in out:
            bad.append(f"{case['id']}: Keras raised {out['error']}")
            continue
        want, have = np.asarray(ref["value"], np.float64), np.asarray(out["value"], np.float64)
        if want.shape != have.shape:
            bad.append(f"{case['id']}: shape {have.shape} != {want.shape}")
        elif not _agree(have, want):
            bad.append(f"{case['id']}: {have.ravel()[:4]} != {want.ravel()[:4]}")
        elif case.get("expect_nan") and not np.isnan(want).any():
            bad.append(f"{case['id']}: a {case['nonfinite']} logit gave {want.ravel()[:4]}, not NaN")
    assert not bad, f"{len(bad)} of {len(_cases_of(loss, backend))} cases differ:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("loss", _keras_cases.LOSSES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_pytorch(keras_run, backend, loss):
    got = keras_run(backend)["cases"]
    bad, compared = [], 0
    expected = 0
    for case in _cases_of(loss, backend):
        ref = reference(case["id"])
        infinite = case.get("nonfinite") and not np.isfinite(np.asarray(ref["value"], np.float64)).all()
        if not case["grad"] or infinite:
            continue  # an infinite loss (a ±Inf logit confidently wrong under CE/focal) has no gradient to compare
        expected += 1
        if "grad" not in got[case["id"]]:
            continue
        want = ref["grad"]
        have = keras_grad_as_torch(got[case["id"]]["grad"], case)
        scale = float(np.abs(want).max())
        assert scale > 0, f"{case['id']}: a zero gradient compares nothing"
        err = float(np.abs(have.astype(np.float64) - want).max()) if have.shape == want.shape else np.inf
        if not err <= TOL * scale:
            bad.append(f"{case['id']}: max |Δ∂| = {err:.3g} (largest entry {scale:.3g})")
        compared += 1
    assert compared == expected, "a gradient case has no Keras gradient"
    assert not bad, f"{len(bad)} of {compared} gradients differ:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_match_pytorch(keras_run, backend):
    """Bad input raises in both, the same exception type, and the same message (the class axis in each
    layout's words) or the same content where the frameworks name the arguments differently."""
    got = keras_run(backend)["errors"]
    bad = []
    for case in ERRORS:
        ref, out = reference(case["id"]), got[case["id"]]
        if "error" not in ref or "error" not in out:
            bad.append(f"{case['id']}: PyTorch {ref.get('error', 'no error')}, Keras {out.get('error', 'no error')}")
            continue
        (t_type, t_msg), (k_type, k_msg) = ref["error"], out["error"]
        if t_type != k_type:
            bad.append(f"{case['id']}: {k_type} in Keras, {t_type} in PyTorch")
        if case["exact"] and k_msg != t_msg.replace(*case["axis"]):
            bad.append(f"{case['id']}:\n  Keras:   {k_msg}\n  PyTorch: {t_msg}")
        for text in case["contains"]:
            if text not in k_msg or text not in t_msg:
                bad.append(f"{case['id']}: {text!r} missing from\n  Keras:   {k_msg}\n  PyTorch: {t_msg}")
    assert not bad, "\n".join(bad)
