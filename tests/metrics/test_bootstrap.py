"""Bootstrap intervals and paired tests against scipy.stats on the same data and seeds.

Both draw their resamples from ``np.random.default_rng(seed)`` in the same way (bootstrap: an index matrix
``integers(0, n, (R, n))``; sign flips: a shuffled index pair per case), so intervals and p-values are equal
up to the rounding of a mean (1e-12), not merely statistically close.
"""

import numpy as np
import pytest

stats = pytest.importorskip("scipy.stats")

from phidice.metrics import bootstrap_ci, bootstrap_ci_by_group, paired_test
from phidice.metrics.bootstrap import CHUNK_ELEMENTS, bootstrap_means


def _mean_diff(a, b, axis=-1):
    return np.mean(a - b, axis=axis)


@pytest.fixture()
def dsc():
    return np.random.default_rng(11).beta(8, 2, size=45)  # skewed towards 1, like per-case Dice


@pytest.mark.parametrize("method", ["percentile", "BCa"])
@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_ci_equals_scipy_bootstrap(dsc, method, seed, confidence):
    ref = stats.bootstrap(
        (dsc,), np.mean, method=method, n_resamples=4999, confidence_level=confidence, rng=np.random.default_rng(seed)
    )
    ours = bootstrap_ci(dsc, method=method.lower(), n_resamples=4999, confidence=confidence, seed=seed)
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert ours.mean == pytest.approx(dsc.mean(), abs=1e-15)
    assert (ours.n, ours.n_undefined, ours.method) == (45, 0, method.lower())
    assert ours.low < ours.mean < ours.high


def test_bootstrap_distribution_equals_scipy_across_chunks(monkeypatch):
    """Chunked draws (bounded memory) give the same resamples as scipy's single draw."""
    x = np.random.default_rng(2).normal(size=37)
    monkeypatch.setattr("phidice.metrics.bootstrap.CHUNK_ELEMENTS", 37 * 13)  # 13 resamples per chunk
    ours = bootstrap_means(x, 1000, np.random.default_rng(4))
    ref = stats.bootstrap((x,), np.mean, n_resamples=1000, rng=np.random.default_rng(4), method="percentile")
    np.testing.assert_allclose(ours, ref.bootstrap_distribution, rtol=0, atol=1e-14)
    assert CHUNK_ELEMENTS >= 1 << 20


def test_nan_values_are_left_out_and_counted(dsc):
    with_nan = np.r_[dsc[:20], np.nan, dsc[20:], np.nan]
    ours = bootstrap_ci(with_nan.tolist()[:-1] + [None], n_resamples=2000, seed=3)  # None (JSON) is undefined too
    ref = stats.bootstrap((dsc,), np.mean, method="percentile", n_resamples=2000, rng=np.random.default_rng(3))
    assert (ours.n, ours.n_undefined) == (45, 2)
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), abs=1e-12)


def test_ci_by_group_and_its_errors():
    x = np.array([0.9, 0.8, 0.85, 0.1, 0.2, np.nan, 0.3])
    g = ["HGG", "HGG", "HGG", "LGG", "LGG", "LGG", "LGG"]
    out = bootstrap_ci_by_group(x, g, n_resamples=500, seed=1)
    assert list(out) == ["HGG", "LGG"]
    assert out["HGG"] == bootstrap_ci(x[:3], n_resamples=500, seed=1)
    assert (out["LGG"].n, out["LGG"].n_undefined) == (3, 1)
    with pytest.raises(ValueError, match=r"group 'LGG' has 1 \(of 2, 1 undefined\)"):
        bootstrap_ci_by_group([0.9, 0.8, 0.1, np.nan], ["HGG", "HGG", "LGG", "LGG"], name="DSC")
    with pytest.raises(ValueError, match="one entry per value"):
        bootstrap_ci_by_group(x, g[:3])


def test_ci_degenerate_and_bad_input():
    assert bootstrap_ci([0.0, 0.0, 0.0])[:3] == (0.0, 0.0, 0.0)  # every value equal: the interval is the value
    assert bootstrap_ci([1.0, 1.0], method="bca")[:3] == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 defined values; values has 1"):
        bootstrap_ci([0.5, np.nan])
    with pytest.raises(ValueError, match="inf"):
        bootstrap_ci([1.0, np.inf, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="method"):
        bootstrap_ci([1.0, 2.0], method="basic")
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        bootstrap_ci(np.ones((3, 2)))


def test_ci_is_seeded():
    x = np.random.default_rng(0).random(30)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)
    g = np.random.default_rng(5)
    assert bootstrap_ci(x, seed=g) == bootstrap_ci(x, seed=5)  # a Generator is used as given


@pytest.fixture()
def pair():
    rng = np.random.default_rng(21)
    a = rng.beta(8, 2, size=60)
    return a, np.clip(a + rng.normal(0.015, 0.05, size=60), 0, 1)


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("n", [60, 11])  # 11: 2¹¹ ≤ 4999 resamples, so both enumerate every sign pattern
def test_permutation_p_equals_scipy(pair, alternative, n):
    a, b = pair[0][:n], pair[1][:n]
    ref = stats.permutation_test(
        (a, b),
        _mean_diff,
        permutation_type="samples",
        n_resamples=4999,
        alternative=alternative,
        rng=np.random.default_rng(9),
        vectorized=True,
    )
    ours = paired_test(a, b, n_resamples=4999, alternative=alternative, seed=9)
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    assert ours.exact == (n == 11)
    assert ours.difference == pytest.approx(ref.statistic, abs=1e-15)
    assert ours.mean_a - ours.mean_b == pytest.approx(ours.difference, abs=1e-12)


def test_paired_bootstrap_equals_scipy(pair):
    a, b = pair
    ref = stats.bootstrap(
        (a, b), _mean_diff, paired=True, method="percentile", n_resamples=4999, rng=np.random.default_rng(8)
    )
    ours = paired_test(a, b, method="bootstrap", n_resamples=4999, seed=8)
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), abs=1e-12)
    dist = ref.bootstrap_distribution
    p = 2 * min((np.sum(dist <= 0) + 1) / 5000, (np.sum(dist >= 0) + 1) / 5000)
    assert ours.p_value == pytest.approx(min(p, 1.0), abs=1e-15)
    bca = stats.bootstrap((a, b), _mean_diff, paired=True, method="BCa", n_resamples=4999, rng=np.random.default_rng(8))
    ours = paired_test(a, b, n_resamples=4999, seed=8, ci_method="bca")  # the interval does not depend on the test
    assert (ours.low, ours.high) == pytest.approx(tuple(bca.confidence_interval), abs=1e-12)


def test_nan_cases_are_dropped_from_paired_tests(pair):
    a, b = pair[0].copy(), pair[1].copy()
    a[3], b[10], a[20], b[20] = np.nan, np.nan, np.nan, np.nan
    keep = ~(np.isnan(a) | np.isnan(b))
    ours = paired_test(a, b, n_resamples=999, seed=2)
    ref = stats.permutation_test(
        (a[keep], b[keep]),
        _mean_diff,
        permutation_type="samples",
        n_resamples=999,
        rng=np.random.default_rng(2),
        vectorized=True,
    )
    assert (ours.n, ours.n_dropped) == (57, 3)
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_noise_is_not_significant_a_shift_is():
    """Calibration: over 200 data sets, noise-only differences are called significant about 5 % of the time (the
    test's size), a real shift of 0.03 DSC nearly always; the 3-sigma binomial band of 200 draws at 5 % is
    [0, 0.096], at 0.05 significance."""
    rng = np.random.default_rng(123)
    noise_hits = shift_hits = boot_noise = 0
    for k in range(200):
        a = rng.beta(8, 2, size=40)
        noise = a + rng.normal(0, 0.03, size=40)
        shifted = a + 0.03 + rng.normal(0, 0.03, size=40)
        noise_hits += paired_test(noise, a, n_resamples=999, seed=k).p_value < 0.05
        boot_noise += paired_test(noise, a, method="bootstrap", n_resamples=999, seed=k).p_value < 0.05
        shift_hits += paired_test(shifted, a, n_resamples=999, seed=k).p_value < 0.05
    assert noise_hits / 200 <= 0.096 and boot_noise / 200 <= 0.096
    assert noise_hits > 0  # a test that never rejects would pass the first line too
    assert shift_hits / 200 >= 0.95


def test_one_noise_case_and_one_shift_case():
    rng = np.random.default_rng(0)
    a = rng.beta(8, 2, size=50)
    b = a + rng.normal(0, 0.02, size=50)
    b = b - (b - a).mean()  # exactly zero mean difference: pure noise
    for method in ("permutation", "bootstrap"):
        t = paired_test(b, a, method=method, seed=0)
        assert t.p_value > 0.5 and t.low < 0 < t.high
        s = paired_test(b + 0.02, a, method=method, seed=0)
        assert s.p_value < 0.001 and 0 < s.low < 0.02 < s.high


def test_paired_bad_input():
    with pytest.raises(ValueError, match="same cases"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 cases defined for both A and B; got 1"):
        paired_test([1.0, np.nan, 3.0], [1.0, 2.0, np.nan], names=("A", "B"))
    with pytest.raises(ValueError, match="alternative"):
        paired_test([1.0, 2.0], [1.0, 2.0], alternative="bigger")
    with pytest.raises(ValueError, match="method"):
        paired_test([1.0, 2.0], [1.0, 2.0], method="t")
    same = paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.p_value == 1.0 and same.difference == 0.0 and (same.low, same.high) == (0.0, 0.0)


def test_permutation_equals_scipy_across_chunks(pair, monkeypatch):
    """Odd chunk sizes (7 resamples × 61 cases: an odd number of 32-bit draws per chunk) draw the same coins."""
    a, b = np.r_[pair[0], 0.5], np.r_[pair[1], 0.45]  # 61 cases
    monkeypatch.setattr("phidice.metrics.bootstrap.CHUNK_ELEMENTS", 61 * 7)
    ours = paired_test(a, b, n_resamples=999, seed=12)
    ref = stats.permutation_test(
        (a, b), _mean_diff, permutation_type="samples", n_resamples=999, rng=np.random.default_rng(12), vectorized=True
    )
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12) and not ours.exact
    assert 0.001 < ref.pvalue < 0.999  # a p-value that depends on the draws, not a trivial 1 or minimum
