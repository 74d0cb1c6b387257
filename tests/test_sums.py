"""phidice.sums names one function per stage (prepare_target → activate → dense_target → sum_stats); the old
names of the sums stage warn or say where the function went."""

import pytest
import torch

import phidice
import phidice.sums as sums
from phidice.core.config import DiceConfig


def test_sum_stats_is_the_sums_stage_of_compute_stats():
    x = torch.randn(2, 3, 5, 5)
    y = torch.randint(0, 3, (2, 5, 5))
    config = DiceConfig(phi="I", fused=False)
    staged = sums.sum_stats(x, sums.prepare_target(x, y, config, None, check_range=False), config)
    for got, want in zip(staged, phidice.compute_stats(x, y, config=config)):
        torch.testing.assert_close(got, want)


def test_stats_of_prepared_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="phidice.sums.sum_stats"):
        assert sums.stats_of_prepared is sums.sum_stats


def test_class_stats_says_where_it_went():
    with pytest.raises(AttributeError, match="phidice.compute_stats"):
        sums.class_stats  # noqa: B018


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="has no attribute 'bogus'"):
        sums.bogus  # noqa: B018
