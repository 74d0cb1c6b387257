"""The Keras losses show the options of DiceConfig (less the PyTorch-only ones) and write them in get_config;
their docstring examples run.

Keras fixes its back end at import, so the losses are read by the Keras worker of a back end, which runs once
per session for the whole Keras suite (tests/keras/conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
from _keras_params import BACKENDS

from phidice.core.config import CEConfig, DiceConfig

OWN = {"data_format", "name", "labels_superset_map"}


@pytest.fixture()
def keras_signatures(keras_run, backend):
    """What the Keras worker of ``backend`` read from the losses (tests/keras/_keras_worker.py)."""
    out = keras_run(backend)["signatures"]
    assert "failed" not in out, out.get("failed")
    return out


@pytest.mark.parametrize("backend", ["jax"])
@pytest.mark.parametrize("name", ["DiceLoss", "DiceCELoss", "LeafDiceLoss", "MarginalDiceLoss"])
def test_keras_losses_show_the_config_fields(keras_signatures, name):
    skip = set(keras_signatures["skip"])
    assert skip == {"fused", "sync_batch", "overlap"}
    expected = [f.name for f in dataclasses.fields(DiceConfig) if f.name not in skip]
    if name == "DiceCELoss":
        expected += [f.name for f in dataclasses.fields(CEConfig)]
    got = keras_signatures[name]
    names = [p[0] for p in got["params"]]
    assert [n for n in names if n not in OWN] == expected  # Φ and ε first, then the fields in their order
    assert {"data_format", "name"} <= set(names) and names == got["init"]
    hints = {**typing.get_type_hints(DiceConfig), **typing.get_type_hints(CEConfig)}
    # where __post_init__ normalises a wider input (Φ as a name), the signature shows what a caller may pass
    hints.update({f.name: f.metadata["accepts"] for f in dataclasses.fields(DiceConfig) if "accepts" in f.metadata})
    for pname, kind, _default, annotation in got["params"]:
        if pname not in OWN:
            assert annotation == repr(hints[pname]), pname
            assert kind == ("POSITIONAL_OR_KEYWORD" if pname in ("phi", "eps") else "KEYWORD_ONLY"), pname
    extra = {"labels_superset_map"} if name in ("LeafDiceLoss", "MarginalDiceLoss") else set()
    assert got["config"] == sorted(set(expected) | {"name", "data_format"} | extra)  # get_config: the same fields
    json.dumps(got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_keras_examples_run(keras_signatures):
    failed, attempted = keras_signatures["doctest"]
    assert attempted > 0 and failed == 0, f"{failed} of {attempted} examples of phidice.keras.losses fail"
