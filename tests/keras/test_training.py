"""The Keras losses in Keras's own machinery, per back end: ``model.fit`` (finite, decreasing), save and reload
of a compiled model, mixed precision, compiled (jit / tf.function) calls, serialization, and what only the
Keras losses have (no sample_weight, no torch-only options). Also: the import pulls no torch."""

from __future__ import annotations

import importlib.metadata
import math

import _keras_cases
import pytest
from _keras_params import BACKENDS, DATA_PARALLEL

FITS = ("dice_BI", "dice_ce_I", "leaf_supersets")


def _ok(entry: dict) -> dict:
    assert "exception" not in entry, entry["exception"]
    return entry


@pytest.mark.parametrize("run", FITS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_decreases_the_loss(keras_run, backend, run):
    history = _ok(keras_run(backend)["fit"][run])["history"]
    assert len(history) == 6 and all(math.isfinite(v) for v in history), history
    assert history[-1] < 0.9 * history[0], history


@pytest.mark.parametrize("run", FITS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_model_reloads_with_its_loss(keras_run, backend, run):
    """A ``.keras`` file of a model compiled with the loss loads back without custom_objects: the same loss
    class and options, and on the same batch the reloaded model and loss give the trained model's value."""
    entry = _ok(keras_run(backend)["fit"][run])
    assert entry["reloaded_type"] == entry["type"]
    assert entry["reloaded_config"] == entry["config"]
    before, after = entry["evaluate"]
    assert math.isfinite(before) and before == after, (before, after)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_precision_accumulates_in_float32(keras_run, backend):
    """The fits under mixed_float16 and mixed_bfloat16: half-precision logits, a float32 loss."""
    compute = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
    entries = [_ok(keras_run(backend)["fit"][run]) for run in FITS]
    assert {e["policy"] for e in entries} == set(compute)
    for entry in entries:
        assert entry["logits_dtype"] == compute[entry["policy"]], entry["policy"]
        assert entry["loss_dtype"] == "float32", entry["policy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_calls_equal_eager_ones(keras_run, backend):
    """jax.jit and tf.function (with unknown batch and spatial sizes) give the eager values."""
    traced = keras_run(backend)["traced"]
    if "skipped" in traced:
        assert backend == "torch", traced
        pytest.skip(traced["skipped"])
    ids = [c["id"] for c in _keras_cases.scenario_cases(_keras_cases.build_cases())]
    for case_id in ids:
        entry = _ok(traced[case_id])
        assert abs(entry["traced"] - entry["eager"]) <= 1e-5 * max(1.0, abs(entry["eager"])), (case_id, entry)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_labels_under_jit_give_nan(keras_run, backend):
    """Values cannot be read under jit: a label out of range makes the loss NaN there (eagerly: the error);
    validate_args=False skips the check and gives a number."""
    traced = keras_run(backend)["traced"]
    if "skipped" in traced:
        pytest.skip(traced["skipped"])
    guard = _ok(traced["guard"])
    assert math.isnan(guard["traced"])
    assert guard["eager"] is not None and "labels must lie in [0, 2]; got values in [0, 5]" in guard["eager"]
    assert math.isfinite(guard["unchecked"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_serialization_round_trip(keras_run, backend):
    for case_id, entry in keras_run(backend)["serialize"].items():
        entry = _ok(entry)
        assert entry["same_config"], case_id
        assert entry["type"] == case_id.split("-")[0]
        a, b = entry["values"]
        assert a == b, case_id


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_only_rules(keras_run, backend):
    got = keras_run(backend)["keras_only"]
    expected = {
        "sample_weight": ("ValueError", "takes no sample_weight"),
        "sync_batch": ("TypeError", "has no 'sync_batch' option"),
        "fused": ("TypeError", "has no 'fused' option"),
        "unknown": ("TypeError", "unexpected keyword argument(s) 'bogus'"),
        "data_format": ("ValueError", "data_format must be one of"),
        "both_annotated": ("ValueError", "pass annotated= or the map, not both"),
        "superset_map_dense": ("ValueError", "labels_superset_map needs integer label targets"),
    }
    for name, (kind, text) in expected.items():
        assert got[name] is not None, f"{name}: no error"
        assert got[name][0] == kind and text in got[name][1], (name, got[name])


@pytest.mark.parametrize("backend", DATA_PARALLEL)
def test_which_batch_phi_spans_under_data_parallelism(keras_run, backend):
    """What docs/keras.md says, on two CPU devices and a batch split 4 + 4: under tf.distribute a BI Dice is
    computed per replica and Keras reports the mean of the replicas' losses (not twice it); under JAX's
    keras.distribution.DataParallel it is the Dice of the whole batch."""
    entry = _ok(keras_run(backend)["replicas"])
    assert entry["replicas"] == 2
    mean_of_halves = sum(entry["halves"]) / 2
    assert abs(entry["whole"] - mean_of_halves) > 1e-4, entry  # the two readings differ on these data
    expected = mean_of_halves if backend == "tensorflow" else entry["whole"]
    assert abs(entry["reported"] - expected) <= 1e-5, entry


@pytest.mark.parametrize("backend", DATA_PARALLEL)
def test_import_pulls_no_torch(keras_run, backend):
    """phidice.keras never imports torch: on JAX and TensorFlow it is not loaded, neither by the import nor by
    any case, fit or scenario of the whole run."""
    result = keras_run(backend)
    assert result["backend"] == backend
    assert result["torch_after_import"] is False
    assert result["torch_at_end"] is False


def test_base_install_pulls_no_keras():
    """The torch-only install (``pip install phidice``, ``make demo``) requires none of Keras, JAX, TensorFlow:
    they come only with extras."""
    requirements = importlib.metadata.requires("phidice") or []
    heavy = ("keras", "jax", "jaxlib", "tensorflow", "tensorflow-cpu")
    for req in requirements:
        name = req.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
        if name in heavy:
            assert "extra ==" in req, f"{req!r} is a base requirement"
    keras_extra = [r for r in requirements if 'extra == "keras"' in r]
    assert any(r.lower().startswith("keras") for r in keras_extra), requirements
