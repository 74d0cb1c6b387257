"""phidice.keras.loss_from_stats has the name, arguments and numbers of phidice.loss_from_stats; the old
phidice.keras.loss_from_sums still works and warns; bad input names the argument."""

from __future__ import annotations

import _keras_stats_cases as S
import numpy as np
import pytest
import torch
from _keras_params import BACKENDS

import phidice


@pytest.fixture()
def keras_stats(keras_run, backend):
    out = keras_run(backend)["loss_from_stats"]
    assert "failed" not in out, out.get("failed")
    return out


def torch_values() -> list[np.ndarray]:
    inter, P, Y, keep = S.stats_arrays()
    stats = phidice.DiceStats(*(torch.tensor(a, dtype=torch.float32) for a in (inter, P, Y)))
    values = []
    for options, with_keep, C in S.STATS_CASES:
        value = phidice.loss_from_stats(
            stats, keep=torch.tensor(keep) if with_keep else None, num_channels=C, **options
        )
        values.append(value.double().numpy())
    return values


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_loss_from_stats_equals_the_pytorch_one(keras_stats):
    expected = torch_values()
    assert len(keras_stats["values"]) == len(expected) == len(S.STATS_CASES)
    for (options, _, _), got, want in zip(S.STATS_CASES, keras_stats["values"], expected):
        assert got.shape == want.shape, options
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=str(options))


@pytest.mark.parametrize("backend", ["jax"])
def test_the_same_parameters_as_the_pytorch_one(keras_stats):
    import inspect

    torch_params = [p for p in inspect.signature(phidice.loss_from_stats).parameters]
    torch_only = {"fused", "sync_batch", "overlap"}
    assert keras_stats["params"] == [p for p in torch_params if p not in torch_only]


@pytest.mark.parametrize("backend", ["jax"])
def test_loss_from_sums_is_deprecated_and_unchanged(keras_stats):
    dep = keras_stats["deprecated"]
    assert [w[0] for w in dep["warnings"]] == ["DeprecationWarning"]
    assert "phidice.keras.loss_from_stats" in dep["warnings"][0][1]
    bi = S.STATS_CASES[1]
    assert bi[0] == {"phi": "BI", "eps": 1.0}
    np.testing.assert_allclose(dep["value"], keras_stats["values"][1], rtol=1e-6)


@pytest.mark.parametrize("backend", ["jax"])
def test_bad_input_names_the_argument(keras_stats):
    errors = keras_stats["errors"]
    assert errors["keep_shape"][0] == "ValueError" and "keep must have shape (B, C) = (3, 3)" in errors["keep_shape"][1]
    assert errors["fused"][0] == "TypeError" and "'fused'" in errors["fused"][1]
    assert errors["bad_phi"][0] == "ValueError" and "phi" in errors["bad_phi"][1]
