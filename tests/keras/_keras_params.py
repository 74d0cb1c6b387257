"""The back ends the Keras tests run on: JAX and PyTorch by default, TensorFlow with --tensorflow."""

import pytest

BACKENDS = ["jax", "torch", pytest.param("tensorflow", marks=pytest.mark.tensorflow)]
DATA_PARALLEL = ["jax", pytest.param("tensorflow", marks=pytest.mark.tensorflow)]
