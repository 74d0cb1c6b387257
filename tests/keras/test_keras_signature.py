"""The Keras losses show the options of DiceConfig (less the PyTorch-only ones) and write them in get_config;
their docstring examples run.

Keras fixes its back end at import, so the losses are read in a child process on the JAX back end.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from phidice.core.config import CEConfig, DiceConfig

SRC = Path(__file__).resolve().parents[2] / "src"
CHILD = """
import doctest, inspect, json, typing
from phidice import keras as pk
from phidice.keras import losses
from phidice.keras.losses import KERAS_SKIP
result = doctest.testmod(losses, optionflags=doctest.NORMALIZE_WHITESPACE, report=False)
out = {"skip": list(KERAS_SKIP), "doctest": [result.failed, result.attempted]}
for name in ("DiceLoss", "DiceCELoss", "LeafDiceLoss", "MarginalDiceLoss"):
    cls = getattr(pk, name)
    sig = inspect.signature(cls)
    params = [[p.name, p.kind.name, repr(p.default), repr(p.annotation)] for p in sig.parameters.values()]
    out[name] = {"params": params,
                 "init": list(inspect.signature(cls.__init__).parameters)[1:],
                 "config": sorted(cls().get_config())}
print(json.dumps(out))
"""
OWN = {"data_format", "name", "labels_superset_map"}


@pytest.fixture(scope="module")
def keras_signatures():
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("needs keras and jax (the test extra)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


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
    for pname, kind, _default, annotation in got["params"]:
        if pname not in OWN:
            assert annotation == repr(hints[pname]), pname
            assert kind == ("POSITIONAL_OR_KEYWORD" if pname in ("phi", "eps") else "KEYWORD_ONLY"), pname
    extra = {"labels_superset_map"} if name in ("LeafDiceLoss", "MarginalDiceLoss") else set()
    assert got["config"] == sorted(set(expected) | {"name", "data_format"} | extra)  # get_config: the same fields
    json.dumps(got)


def test_the_keras_examples_run(keras_signatures):
    failed, attempted = keras_signatures["doctest"]
    assert attempted > 0 and failed == 0, f"{failed} of {attempted} examples of phidice.keras.losses fail"
