"""The differential property of tests/losses/_differential.py for the Keras losses: a batch of cases drawn with
the same hypothesis strategy (the losses Keras has, float32, no mask — the Keras losses take none), run by each
back end's worker in one go and compared with the PyTorch reference path by the same assertion.

Hypothesis cannot drive a worker process example by example, so the batch is drawn up front, in the parent, by
running the strategy under ``@given`` in its generate phase only (no shrinking): derandomized in ``make test``
(``phidice-bounded``: the same ``BOUNDED`` cases every run), and under ``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``)
``PHIDICE_KERAS_EXAMPLES`` cases from the seed ``PHIDICE_FUZZ_SEED`` (0 by default), so that the parent and the
pytest-xdist processes draw the same batch and a failure can be drawn again. A failing case is reported with its
whole recipe (:func:`_differential.tensors` rebuilds its tensors from it).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import torch
from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))

import _differential

KERAS_LOSSES = {"dice": "DiceLoss", "dice_ce": "DiceCELoss", "leaf": "LeafDiceLoss", "marginal": "MarginalDiceLoss"}
LAYOUTS = ("channels_last", "channels_first")
BOUNDED = 40
FUZZ = _differential.PROFILE == "phidice-fuzz"


def n_examples() -> int:
    return int(os.environ.get("PHIDICE_KERAS_EXAMPLES", "400")) if FUZZ else BOUNDED


def strategy():
    """(recipe, data_format): a case of the shared strategy narrowed to the Keras losses, and a layout."""
    recipe = _differential.cases(losses=tuple(KERAS_LOSSES), dtypes=(torch.float32,), masks=(None,))
    return st.tuples(recipe, st.sampled_from(LAYOUTS))


@functools.cache
def recipes() -> tuple[tuple[dict, str], ...]:
    """The drawn batch, in the order hypothesis drew it (duplicates dropped)."""
    drawn: dict[str, tuple[dict, str]] = {}
    chosen = settings(
        settings.get_profile(_differential.PROFILE), max_examples=n_examples(), phases=[Phase.generate], database=None
    )

    @chosen
    @given(strategy())
    def collect(example):
        drawn.setdefault(repr(example), example)

    if FUZZ:
        collect = seed(int(os.environ.get("PHIDICE_FUZZ_SEED", "0")))(collect)
    collect()
    return tuple(drawn.values())


def keras_case(index: int, recipe: dict, data_format: str) -> dict:
    """The worker's form of a recipe (NumPy only, as ``_keras_cases`` makes them): x/y in the layout the Keras
    loss is told, x_t/y_t channels-first for PyTorch."""
    t = _differential.tensors(recipe)
    x_t, y_t = t["x"].numpy(), t["y"].numpy()
    first = data_format == "channels_first"
    x = x_t if first else np.moveaxis(x_t, 1, -1)
    y = y_t if (first or y_t.ndim < x_t.ndim) else np.moveaxis(y_t, 1, -1)
    return {
        "id": f"fuzz-{index}-{recipe['loss']}-{recipe['phi']}-{recipe['activation']}",
        "loss": KERAS_LOSSES[recipe["loss"]],
        "options": _differential.options(recipe),
        "keras_options": {"data_format": data_format},
        "x": np.ascontiguousarray(x),
        "y": np.ascontiguousarray(y),
        "x_t": x_t,
        "y_t": y_t,
        "annotated": None if t["annotated"] is None else t["annotated"].numpy(),
        "superset_map": None,
        "dtype": "float32",
        "grad": True,
    }


@functools.cache
def batch() -> tuple[tuple[dict, dict], ...]:
    """(recipe, worker case) for every drawn example."""
    return tuple((recipe, keras_case(i, recipe, layout)) for i, (recipe, layout) in enumerate(recipes()))


def worker_cases() -> list[dict]:
    return [case for _, case in batch()]


def reference(recipe: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """(logits, loss, ∂Σloss/∂logits, whether the activation holds a NaN) on the PyTorch reference path."""
    t = _differential.tensors(recipe)
    loss, grad = _differential.evaluate(lambda z: _differential.functional(recipe, z, t, False), t["x"])
    return t["x"], loss, grad, _differential.expect_nan(recipe, t["x"])


def check(name: str, recipe: dict, case: dict, out: dict) -> None:
    """One back end's result for one case against the PyTorch reference path (the shared assertion)."""
    assert "error" not in out and "exception" not in out, f"{name} raised {out.get('error') or out['exception']}"
    x, ref_loss, ref_grad, nan = reference(recipe)
    grad = out["grad"] if case["keras_options"]["data_format"] == "channels_first" else np.moveaxis(out["grad"], -1, 1)
    got = (torch.as_tensor(np.asarray(out["value"], np.float32)), torch.as_tensor(np.asarray(grad, np.float32)))
    _differential.assert_agrees(name, recipe, x, nan, got, (ref_loss, ref_grad))
