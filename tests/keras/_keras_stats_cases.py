"""The sums and options on which phidice.keras.loss_from_stats is held against phidice.loss_from_stats (the Keras
worker computes the Keras side, tests/keras/test_keras_stats.py the PyTorch one)."""

from __future__ import annotations

import numpy as np

# (options, with keep?, num_channels): phidice.keras.loss_from_stats against phidice.loss_from_stats on one set of sums
STATS_CASES = [
    ({"phi": "I"}, False, None),
    ({"phi": "BI", "eps": 1.0}, False, None),
    ({"phi": "CI", "eps": [0.5, 1.0, 2.0], "include_background": False}, False, 4),
    ({"phi": "BCI", "weighting": "generalized"}, False, None),
    ({"phi": "I", "class_weights": [1.0, 2.0, 3.0], "reduction": "none"}, False, None),
    ({"phi": "BI", "empty": "skip", "eps": 1e-5}, True, None),
    ({"phi": "I", "eps_nr": 0.0, "eps_dr": 1.0, "eps_empty": 0.5}, True, None),
]


def stats_arrays():
    """(B, C') = (3, 3) sums with an empty target entry, the same in the worker and in the test."""
    rng = np.random.default_rng(7)
    P = rng.uniform(0.5, 5.0, (3, 3))
    Y = rng.integers(0, 4, (3, 3)).astype(float)
    Y[1, 2] = 0.0
    inter = np.minimum(P, Y) * rng.uniform(0.2, 1.0, (3, 3))
    keep = np.array([[True, True, False], [True, False, True], [True, True, True]])
    return inter, P, Y, keep
