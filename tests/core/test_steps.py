"""The steps that torch and Keras share, on both namespaces: ε and class weights aligned with the scored
classes (:func:`phidice.equations.align_smoothing`), and the sums and keep of the leaf and marginal Dice
(:func:`phidice.core.steps.partial_stats`) up to their loss.

The Keras side runs once per back end in a process of its own (Keras reads KERAS_BACKEND at import), on the
cases below, and returns plain numbers; both sides are held to the same hand-computed values.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import phidice
from phidice.core import steps
from phidice.core.config import DiceConfig
from phidice.core.types import PreparedTarget
from phidice.core.xp import TORCH
from phidice.equations import align_smoothing, config_smoothing, scored_loss
from phidice.sums import sum_stats

SRC = Path(__file__).resolve().parents[2] / "src"

# (options, C, expected per Smoothing field: a float, None, or (value, shape) of an array of the sums' dtype)
ALIGN_CASES = {
    "floats stay floats": (dict(eps=1.0), 3, [1.0, 1.0, None, None]),
    "per-class eps without background": (
        dict(eps_nr=(1.0, 2.0, 3.0), eps_dr=(4.0, 5.0, 6.0), include_background=False),
        3,
        [([[2.0, 3.0]], (1, 2)), ([[5.0, 6.0]], (1, 2)), None, None],
    ),
    "C − 1 class weights": (
        dict(phi="CI", eps=0.0, class_weights=(2.0, 3.0), include_background=False),
        3,
        [0.0, 0.0, None, ([[2.0, 3.0]], (1, 2))],
    ),
    "eps_empty makes scalars arrays": (dict(eps=0.5, eps_empty=2.0), 3, [(0.5, ()), (0.5, ()), (2.0, ()), None]),
    "per-class weights with background": (
        dict(phi="BCI", eps_nr=0.25, eps_dr=(1.0, 2.0, 3.0), class_weights=(1.0, 2.0, 4.0)),
        3,
        [0.25, ([[1.0, 2.0, 3.0]], (1, 3)), None, ([[1.0, 2.0, 4.0]], (1, 3))],
    ),
}
ALIGN_ERROR = (dict(eps_nr=(1.0, 2.0), eps_dr=1.0), 4)


def plain(value):
    """A Smoothing field as the cases write it: a float, None, or (nested list, shape)."""
    if value is None or isinstance(value, float):
        return value
    a = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    return (a.tolist(), tuple(a.shape))


def check_aligned(got, expected, dtype: str):
    """``got``: (plain field, dtype name or None) per field."""
    for (value, got_dtype), want in zip(got, expected):
        if want is None or isinstance(want, float):
            assert value == want and got_dtype is None
        else:
            assert got_dtype == dtype
            np.testing.assert_array_equal(np.asarray(value[0]), np.asarray(want[0]))
            assert tuple(value[1]) == want[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("case", list(ALIGN_CASES))
def test_align_smoothing_on_torch(case, dtype):
    options, C, expected = ALIGN_CASES[case]
    config = DiceConfig(**options)
    like = torch.zeros(2, C, dtype=dtype)
    got = align_smoothing(config_smoothing(config), config, C, like, xp=TORCH)
    dtypes = [str(v.dtype).removeprefix("torch.") if isinstance(v, torch.Tensor) else None for v in got]
    check_aligned(list(zip(map(plain, got), dtypes)), expected, str(dtype).removeprefix("torch."))


@pytest.mark.parametrize("case", list(ALIGN_CASES))
def test_align_smoothing_of_module_buffers(case):
    """A loss module's float64 buffers: per-class ones sliced and cast like tuples; 0-d ones left as they are
    (they add to the sums without changing their dtype) unless ``eps_empty`` selects between them."""
    options, C, expected = ALIGN_CASES[case]
    loss = phidice.DiceLoss.from_config(DiceConfig(**options))
    like = torch.zeros(2, C, dtype=torch.float32)
    got = align_smoothing(loss.smoothing, loss.config, C, like, xp=TORCH)
    for value, buffer, want in zip(got, loss.smoothing, expected):
        if want is None:
            assert value is None
        elif isinstance(want, float):
            assert value is buffer and value.dtype == torch.float64 and float(value) == want
        else:
            assert value.dtype == torch.float32 and plain(value) == (want[0], want[1])


def test_align_smoothing_names_the_axis():
    options, C = ALIGN_ERROR
    config = DiceConfig(**options)
    with pytest.raises(
        ValueError, match="eps_nr has 2 values .* 4 classes: expected 4 values, one per class along dim 1"
    ):
        align_smoothing(config_smoothing(config), config, C, torch.zeros(1, C), xp=TORCH)


# two samples, three classes, three voxels; probabilities (activation=None) per class over the voxels
PROBS = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]
LABELS = [[0, 1, 0], [2, 1, 0]]
ANNOTATED = [[True, True, False], [True, True, True]]  # sample 0 does not annotate class 2: its voxel reads 0
PLAIN = {  # Σ y·ỹ, Σ ỹ, Σ y per (b, c)
    "intersection": [[0.8, 0.7, 0.0], [0.1, 0.7, 0.1]],
    "pred_sum": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
    "target_sum": [[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]],
}
# (kind, include_background): (sums, keep, loss under Φ = I, ε = 0)
PARTIAL_CASES = {
    # the background of sample 0 leaves (its label 0 may hide class 2): 1 − 1.4/2; then 0.9, 0.3, 0.9
    "leaf": (PLAIN, [[False, True, False], [True, True, True]], 0.6),
    # ỹ_2 joins ỹ_0 in sample 0: I_0 = 0.8 + 0.9, P_0 = 2, P_2 = 0; T = 3.4/4, 1.4/2, then 0.1, 0.7, 0.1
    "marginal": (
        {
            "intersection": [[1.7, 0.7, 0.0], [0.1, 0.7, 0.1]],
            "pred_sum": [[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]],
            "target_sum": [[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]],
        },
        ANNOTATED,
        0.51,
    ),
    # without the background the merged ỹ_0 leaves: the plain sums, the foreground's 0.3, 0.3, 0.9
    "marginal, no background": (PLAIN, ANNOTATED, 0.5),
}


def partial_config(case: str) -> tuple[str, dict]:
    """The kind and the options of a case."""
    kind, _, rest = case.partition(", ")
    return kind, dict(phi="I", eps=0.0, activation=None, include_background=not rest)


def check_partial(case: str, stats, keep, loss):
    want, want_keep, want_loss = PARTIAL_CASES[case]
    for name, value in stats.items():
        np.testing.assert_allclose(value, want[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert keep == want_keep
    assert loss == pytest.approx(want_loss, rel=1e-6)


@pytest.mark.parametrize("case", list(PARTIAL_CASES))
def test_partial_stats_on_torch(case):
    kind, options = partial_config(case)
    config = DiceConfig(**options)
    probs = torch.tensor([PROBS, PROBS])  # (B, C, voxels)
    prepared = PreparedTarget(torch.tensor(LABELS), None, None)
    annotated = torch.tensor(ANNOTATED)
    calls = []

    def sums(x, p, c):
        calls.append(x)
        return sum_stats(x, p, c)

    full, keep = steps.partial_stats(kind, probs, prepared, annotated, config, sums, TORCH)
    assert len(calls) == (0 if steps.merges_background(kind, config) else 1)
    stats, kept = steps.scored(full, keep, config, 3)
    loss = scored_loss(stats, config, config_smoothing(config), num_channels=3, keep=kept, xp=TORCH)
    check_partial(case, {k: v.tolist() for k, v in full._asdict().items()}, keep.tolist(), float(loss))


def test_partial_kinds():
    config = DiceConfig()
    assert not steps.merges_background("leaf", config)
    assert steps.merges_background("marginal", config)
    assert not steps.merges_background("marginal", config.replace(include_background=False))
    with pytest.raises(ValueError, match="kind must be one of"):
        steps.merges_background("full", config)


KERAS_SCRIPT = """
import json, sys
import numpy as np
from keras import ops
from phidice.core import steps
from phidice.core.config import DiceConfig
from phidice.equations import align_smoothing, config_smoothing, scored_loss
from phidice.keras.checks import dtype_of
from phidice.keras.sums import Prepared, sum_stats
from phidice.keras.xp import KERAS

job = json.loads(sys.argv[1])

def plain(v):
    if v is None or isinstance(v, float):
        return [v, None]
    a = ops.convert_to_numpy(v)
    return [[a.tolist(), list(a.shape)], dtype_of(v)]

out = {"align": {}}
for name, (options, C) in job["align"].items():
    config = DiceConfig(**options)
    like = ops.zeros((2, C), dtype="float32")
    out["align"][name] = [plain(v) for v in align_smoothing(config_smoothing(config), config, C, like, xp=KERAS)]
options, C = job["align_error"]
config = DiceConfig(**options)
try:
    align_smoothing(config_smoothing(config), config, C, ops.zeros((1, C)), xp=KERAS, axis="the last axis")
except ValueError as err:
    out["align_error"] = str(err)
out["partial"] = {}
probs = ops.transpose(ops.convert_to_tensor(np.asarray(job["probs"], "float32")), (0, 2, 1))  # channels last
prepared = Prepared(ops.convert_to_tensor(np.asarray(job["labels"], "int32")), None, None)
annotated = ops.convert_to_tensor(np.asarray(job["annotated"]))
for case, (kind, options) in job["partial"].items():
    config = DiceConfig(**options)
    full, keep = steps.partial_stats(kind, probs, prepared, annotated, config, sum_stats, KERAS)
    stats, kept = steps.scored(full, keep, config, 3)
    loss = scored_loss(stats, config, config_smoothing(config), num_channels=3, keep=kept, xp=KERAS)
    out["partial"][case] = [
        {k: ops.convert_to_numpy(v).tolist() for k, v in full._asdict().items()},
        ops.convert_to_numpy(keep).tolist(),
        float(ops.convert_to_numpy(loss)),
    ]
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["jax", "torch"])
def keras_steps(request):
    """What the shared steps give on keras.ops, per back end (one process each)."""
    backend = request.param
    for module in ("keras", backend):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    job = {
        "align": {name: (options, C) for name, (options, C, _) in ALIGN_CASES.items()},
        "align_error": ALIGN_ERROR,
        "probs": [PROBS, PROBS],
        "labels": LABELS,
        "annotated": ANNOTATED,
        "partial": {case: partial_config(case) for case in PARTIAL_CASES},
    }
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=str(SRC),
        PYTHONWARNINGS="ignore",
    )
    out = subprocess.run(
        [sys.executable, "-c", KERAS_SCRIPT, json.dumps(job)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-5000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", list(ALIGN_CASES))
def test_align_smoothing_on_keras(keras_steps, case):
    got = [((v[0], tuple(v[1])) if isinstance(v, list) else v, d) for v, d in keras_steps["align"][case]]
    check_aligned(got, ALIGN_CASES[case][2], "float32")


def test_align_smoothing_names_the_keras_axis(keras_steps):
    assert keras_steps["align_error"].endswith("expected 4 values, one per class along the last axis")


@pytest.mark.parametrize("case", list(PARTIAL_CASES))
def test_partial_stats_on_keras(keras_steps, case):
    check_partial(case, *keras_steps["partial"][case])
