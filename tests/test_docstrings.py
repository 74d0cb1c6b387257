"""Every public loss, functional and metric has a docstring in one style — Args, Returns (functions), Raises
and an Example — and every example runs (doctest), so the examples show what the code does today.

The Keras losses' examples run in tests/keras/test_keras_signature.py (Keras fixes its back end at import).
"""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import phidice
from phidice import metrics

MODULES = [
    "phidice.sums",
    "phidice.losses.dice",
    "phidice.losses.compound",
    "phidice.losses.overlaps",
    "phidice.losses.gradient",
    "phidice.missing.losses",
    "phidice.missing.functional",
    "phidice.metrics.dice",
    "phidice.metrics.accumulator",
    "phidice.metrics._hard",
    "phidice.metrics.volume",
    "phidice.metrics.roc",
    "phidice.metrics.surface",
    "phidice.metrics.bootstrap",
]
LOSSES = [
    "DiceLoss",
    "DiceCELoss",
    "TverskyLoss",
    "TverskyCELoss",
    "JaccardLoss",
    "JaccardCELoss",
    "LeafDiceLoss",
    "MarginalDiceLoss",
    "LeafDiceCELoss",
    "MarginalDiceCELoss",
    "MarginalCrossEntropyLoss",
    "dice_loss",
    "dice_ce_loss",
    "tversky_loss",
    "tversky_ce_loss",
    "jaccard_loss",
    "jaccard_ce_loss",
    "loss_from_stats",
    "compute_stats",
    "dice_gradient",
    "tversky_gradient",
    "jaccard_gradient",
]
MISSING_FUNCTIONAL = [
    "leaf_dice_loss",
    "marginal_dice_loss",
    "leaf_dice_ce_loss",
    "marginal_dice_ce_loss",
    "marginal_cross_entropy",
]
METRICS = [
    "dice_score",
    "score_from_stats",
    "DiceAccumulator",
    "hard_stats",
    "volume",
    "volume_difference",
    "volume_roc",
    "surface_distances",
    "surface_metrics",
    "hd95",
    "normalized_surface_dice",
    "bootstrap_ci",
    "bootstrap_ci_by_group",
    "paired_test",
]


def public_objects():
    from phidice.missing import functional

    yield from ((n, getattr(phidice, n)) for n in LOSSES)
    yield from ((n, getattr(functional, n)) for n in MISSING_FUNCTIONAL)
    yield from ((n, getattr(metrics, n)) for n in METRICS)


@pytest.mark.parametrize("name,obj", list(public_objects()), ids=lambda v: v if isinstance(v, str) else "")
def test_one_docstring_style(name, obj):
    doc = inspect.getdoc(obj) or ""
    sections = ["Args:", "Raises:", "Example:"] + ([] if isinstance(obj, type) else ["Returns:"])
    missing = [s for s in sections if s not in doc]
    assert not missing, f"{name}: no {missing}"
    assert ">>> " in doc.split("Example:", 1)[1], f"{name}: the example has no code"
    assert inspect.getmodule(obj).__name__ in MODULES, f"{name}: its module's examples are not run below"


@pytest.mark.parametrize("module", MODULES)
def test_the_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE, report=False)
    assert result.attempted > 0, f"{module} has no example"
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} examples of {module} fail: run `python -m doctest -v` on it"
    )
