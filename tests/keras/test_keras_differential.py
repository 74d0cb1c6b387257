"""The differential property for the Keras losses on each back end: the drawn batch of ``_keras_fuzz`` (the
strategy of tests/losses/_differential.py narrowed to what Keras has) gives the PyTorch reference path's loss and
gradient within float32 tolerance, and NaN wherever the activation holds a NaN. ``make test`` checks a fixed,
derandomized batch; ``make fuzz`` a larger random one.
"""

from __future__ import annotations

import _keras_fuzz
import pytest
from _keras_params import BACKENDS


def test_the_batch_reaches_the_hard_cases():
    """The bounded batch is not all easy: every Keras loss, both layouts, per-class ε, ignore_index, extreme and
    non-finite logits, empty and full maps appear in it (else the property could pass on tame data only)."""
    drawn = _keras_fuzz.recipes()
    assert len(drawn) >= min(_keras_fuzz.n_examples(), _keras_fuzz.BOUNDED)
    recipes = [r for r, _ in drawn]
    assert {r["loss"] for r in recipes} == set(_keras_fuzz.KERAS_LOSSES)
    assert {layout for _, layout in drawn} == set(_keras_fuzz.LAYOUTS)
    assert any(isinstance(r["eps"], tuple) for r in recipes) and any(r["ignore"] for r in recipes)
    assert {"extreme", "equal"} <= {r["logits"] for r in recipes}
    assert {"empty", "full"} <= {r["fill"] for r in recipes}
    nan = [_keras_fuzz.reference(r)[3] for r in recipes]
    assert any(nan) and not all(nan)
    assert any("-inf" in r["specials"] for r in recipes)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_agrees_with_the_reference_path(keras_run, backend):
    got = keras_run(backend)["fuzz"]
    cases = _keras_fuzz.batch()
    assert set(got) == {case["id"] for _, case in cases}
    failures = []
    for recipe, case in cases:
        try:
            _keras_fuzz.check(f"keras-{backend}", recipe, case, got[case["id"]])
        except AssertionError as err:
            failures.append(f"{case['id']} ({case['keras_options']['data_format']}): {err}\n    recipe: {recipe!r}")
    assert not failures, f"{len(failures)} of {len(cases)} drawn cases differ:\n" + "\n".join(failures[:10])
