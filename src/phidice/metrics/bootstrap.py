"""Confidence intervals of a per-case mean, and paired tests between two methods scored on the same cases.

The paper compares set-ups on the same validation cases and calls a difference significant at p < 0.05 by
non-parametric bootstrapping. Here:

* :func:`bootstrap_ci` — the 95 % interval of the mean of a per-case metric (DSC, ΔV, HD95, NSD) from
  ``n_resamples`` resamples of the cases with replacement: the percentile interval (default) or BCa;
* :func:`paired_test` — method a against method b on the same cases, from the per-case differences
  d_i = a_i − b_i: the mean difference with its bootstrap interval, and a p-value from the sign-flip
  permutation test (default: exact size at any n; all 2ⁿ sign patterns when 2ⁿ ≤ ``n_resamples``) or from
  the paired bootstrap (``method="bootstrap"``).

NaN means *undefined* (e.g. DSC on an empty reference with ``empty="nan"``): an interval uses the defined
values and reports how many there were; a paired test uses the cases defined for both methods. ±inf is
an error (use a finite worst case, such as the HD95 ``hd_worst="diagonal"``).

Resampling is vectorised: a chunk of resamples at a time as an index matrix (chunk, n) drawn from a seeded
``numpy.random.Generator`` — the same draws as ``scipy.stats.bootstrap`` and
``scipy.stats.permutation_test(permutation_type="samples")`` with ``rng=np.random.default_rng(seed)``, so
the results are equal to theirs. Only numpy and the standard library are needed.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike

from phidice.core.config import check_choice

CI_METHODS = ("percentile", "bca")
TEST_METHODS = ("permutation", "bootstrap")
ALTERNATIVES = ("two-sided", "less", "greater")
CHUNK_ELEMENTS = 1 << 22  # entries of one index matrix (32 MiB of int64): bounds memory at any n_resamples
_TIE_RTOL = 100 * np.finfo(np.float64).eps  # null values this close to the observed one count as ties
_NORMAL = NormalDist()


class MeanCI(NamedTuple):
    """Mean of the defined values and its bootstrap interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int  # defined values the interval is computed from
    n_undefined: int  # NaN values left out
    confidence: float
    method: str


class PairedTest(NamedTuple):
    """Method a against method b on the cases defined for both (d_i = a_i − b_i)."""

    mean_a: float
    mean_b: float
    difference: float  # mean of d_i
    low: float  # bootstrap interval of the mean difference
    high: float
    p_value: float
    n: int  # cases used
    n_dropped: int  # cases undefined (NaN) in a or b
    method: str  # "permutation" or "bootstrap"
    exact: bool  # permutation test over all 2ⁿ sign patterns
    alternative: str


def _generator(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int, None or a numpy Generator; got {seed!r}")
    return np.random.default_rng(seed)


def _values(x, name: str) -> np.ndarray:
    """A 1-D float64 array; None (as in JSON) and NaN are undefined, ±inf is an error."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers (one per case); got {type(x).__name__}") from err
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per case); got shape {a.shape}")
    if np.isinf(a).any():
        raise ValueError(
            f"{name} holds ±inf at case(s) {np.flatnonzero(np.isinf(a))[:10].tolist()}: a mean is "
            "not defined (for HD95 use a finite worst case, e.g. hd_worst='diagonal')"
        )
    return a


def _check_common(confidence, n_resamples, method, methods, what):
    check_choice(what, method, methods)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples!r}")


def _chunks(total: int, n: int, per_row: int = 1):
    chunk = max(1, min(total, CHUNK_ELEMENTS // (n * per_row)))
    for k in range(0, total, chunk):
        yield k, min(chunk, total - k)


def bootstrap_means(x: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` resamples of ``x`` with replacement (the bootstrap distribution of the mean)."""
    n = x.size
    out = np.empty(n_resamples)
    for k, m in _chunks(n_resamples, n):  # a loop over chunks of resamples; each chunk is one index matrix
        out[k : k + m] = x[rng.integers(0, n, (m, n))].mean(axis=-1)
    return out


def _interval(x: np.ndarray, dist: np.ndarray, confidence: float, method: str) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    theta = x.mean()
    if method == "percentile":
        probs = (alpha, 1 - alpha)
    else:  # BCa (Efron & Tibshirani 1993, 14.3): bias z0 from the bootstrap distribution, acceleration a
        # from the jackknife means (n − 1)⁻¹ Σ_{j≠i} x_j
        below = (np.count_nonzero(dist < theta) + np.count_nonzero(dist <= theta)) / (2 * dist.size)
        if below in (0.0, 1.0):
            raise ValueError(
                "the BCa interval is undefined: the mean lies outside the bootstrap distribution "
                "(use method='percentile')"
            )
        z0 = _NORMAL.inv_cdf(below)
        n = x.size
        jack = (x.sum() - x) / (n - 1)
        u = (n - 1) * (jack.mean() - jack)
        accel = (np.sum(u**3) / n**3) / (np.sum(u**2) / n**2) ** 1.5 / 6
        bca: list[float] = []
        for z in (_NORMAL.inv_cdf(alpha), -_NORMAL.inv_cdf(alpha)):
            num = z0 + z
            bca.append(_NORMAL.cdf(z0 + num / (1 - accel * num)))
        probs = (bca[0], bca[1])
    low, high = np.quantile(dist, probs)
    return float(low), float(high)


def bootstrap_ci(
    values: ArrayLike | torch.Tensor,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "percentile",
    seed: int | np.random.Generator | None = 0,
    name: str = "values",
) -> MeanCI:
    """Bootstrap confidence interval of the mean of a per-case metric.

    Args:
        values: one number per case (NaN or None: undefined, left out and counted in ``n_undefined``).
        confidence: the interval's level (0.95 → the 2.5th and 97.5th percentiles for "percentile").
        n_resamples: bootstrap resamples of the defined cases, with replacement.
        method: "percentile" (default) or "bca" (bias-corrected and accelerated).
        seed: int (each call starts from ``np.random.default_rng(seed)``, so results are reproducible and
            equal ``scipy.stats.bootstrap(..., rng=np.random.default_rng(seed))``), a Generator, or None.
        name: what the values are, for error messages (e.g. "DSC of group 'LGG', class 2").

    Fewer than two defined values is a ValueError: one case says nothing about the spread. When every
    defined value is the same the interval is that value.

    Returns:
        :class:`MeanCI`: ``mean``, ``low``, ``high``, ``n``, ``n_undefined``, ``confidence``, ``method``.

    Raises:
        ValueError: fewer than two defined values, a confidence outside (0, 1), or an unknown method.

    Example:
        >>> from phidice.metrics import bootstrap_ci
        >>> ci = bootstrap_ci([0.8, 0.9, 0.7, 0.85, None], n_resamples=1000)
        >>> round(ci.mean, 4), ci.n, ci.n_undefined, ci.low <= ci.mean <= ci.high
        (0.8125, 4, 1, True)
    """
    _check_common(confidence, n_resamples, method, CI_METHODS, "method")
    a = _values(values, name)
    x = a[~np.isnan(a)]
    if x.size < 2:
        raise ValueError(
            f"a confidence interval of the mean needs at least 2 defined values; {name} has {x.size} "
            f"(of {a.size}, {a.size - x.size} undefined)"
        )
    mean = float(x.mean())
    if np.all(x == x[0]):
        low = high = mean
    else:
        low, high = _interval(x, bootstrap_means(x, n_resamples, _generator(seed)), confidence, method)
    return MeanCI(mean, low, high, int(x.size), int(a.size - x.size), float(confidence), method)


def bootstrap_ci_by_group(values, groups, **kwargs) -> dict:
    """:func:`bootstrap_ci` of each group's cases: {group: MeanCI}, groups sorted.

    Args:
        values: one number per case; groups: one group label per case.
        **kwargs: as :func:`bootstrap_ci`.

    Returns:
        {group: MeanCI}, in sorted group order.

    Raises:
        ValueError: lengths that differ, or a group with fewer than two defined values (named).

    Example:
        >>> from phidice.metrics import bootstrap_ci_by_group
        >>> cis = bootstrap_ci_by_group([0.8, 0.9, 0.7, 0.85], ["a", "a", "b", "b"], n_resamples=1000)
        >>> {g: round(ci.mean, 3) for g, ci in cis.items()}
        {'a': 0.85, 'b': 0.775}
    """
    a = _values(values, kwargs.get("name", "values"))
    g = np.asarray(groups.tolist() if isinstance(groups, (np.ndarray, torch.Tensor)) else list(groups), dtype=object)
    if g.shape != a.shape:
        raise ValueError(f"groups must have one entry per value; got {g.shape[0]} groups for {a.size} values")
    name = kwargs.pop("name", "values")
    return {k: bootstrap_ci(a[g == k], name=f"{name} of group {k!r}", **kwargs) for k in sorted(set(g.tolist()))}


def _sign_flip_null(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Means of d under sign flips: every pattern when 2ⁿ ≤ n_resamples (exact), else random ones.

    A random flip swaps a_i and b_i with probability 1/2, independently per resample and case; the coins are
    those of ``scipy.stats.permutation_test(permutation_type="samples")`` from the same Generator.
    """
    n = d.size
    if n < 63 and 2**n <= n_resamples:
        total = 2**n
        out = np.empty(total)
        for k, m in _chunks(total, n):
            bits = (np.arange(k, k + m)[:, None] >> np.arange(n)) & 1
            out[k : k + m] = np.where(bits == 1, -d, d).mean(axis=-1)
        return out, True
    out = np.empty(n_resamples)
    for k, m in _chunks(n_resamples, n):
        # a fair coin per (resample, case): the low bit of a uniform 32-bit integer. scipy shuffles each pair
        # (0, 1) with Generator.permuted, whose one Fisher–Yates step for two items swaps exactly when the next
        # 32-bit draw is even, so with numpy's Generator these are the same coins, 5× faster (equality tested)
        swapped = (rng.integers(0, 2**32, (m, n), dtype=np.uint32) & 1) == 0
        out[k : k + m] = np.where(swapped, -d, d).mean(axis=-1)
    return out, False


def _p_value(null: np.ndarray, observed: float, alternative: str, adjustment: int) -> float:
    gamma = abs(_TIE_RTOL * observed)
    p_less = (np.count_nonzero(null <= observed + gamma) + adjustment) / (null.size + adjustment)
    p_greater = (np.count_nonzero(null >= observed - gamma) + adjustment) / (null.size + adjustment)
    p = {"less": p_less, "greater": p_greater, "two-sided": 2 * min(p_less, p_greater)}[alternative]
    return float(min(p, 1.0))


def paired_test(
    a,
    b,
    *,
    method: str = "permutation",
    alternative: str = "two-sided",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    ci_method: str = "percentile",
    seed=0,
    names: tuple[str, str] = ("a", "b"),
) -> PairedTest:
    """Paired comparison of two methods scored on the same cases (d_i = a_i − b_i; cases undefined in
    either are dropped).

    p-value of H0 "the mean difference is 0":
        * "permutation" (default): sign-flip test — under H0 the labels a/b of a case are exchangeable, so
          each d_i keeps or flips its sign; p = share of sign patterns whose mean is at least as extreme as
          the observed one (exact over all 2ⁿ patterns when 2ⁿ ≤ n_resamples, else with the +1 correction
          of a random test). Equals ``scipy.stats.permutation_test((a, b), ..., permutation_type="samples")``.
        * "bootstrap": paired bootstrap — p = 2 · min(share of bootstrap mean differences ≤ 0, share ≥ 0),
          each with the +1 correction: significant at α about when the bootstrap interval at 1 − α
          excludes 0.
    ``alternative``: "two-sided", "greater" (mean a > mean b) or "less". The interval [low, high] of the
    mean difference is the bootstrap interval (``ci_method``) in both cases; ``seed`` as :func:`bootstrap_ci`
    (the interval and a permutation test each start from ``np.random.default_rng(seed)``).
    At least two cases defined for both are needed.

    Args:
        a, b: one score per case for each method (NaN or None: undefined; such cases are dropped).
        method: "permutation" or "bootstrap" (above); alternative: "two-sided", "greater" or "less".
        confidence, n_resamples, ci_method, seed: as :func:`bootstrap_ci` (``ci_method`` is its ``method``).
        names: the two methods' names, for messages.

    Returns:
        :class:`PairedTest`: the two means, their ``difference`` with [``low``, ``high``], ``p_value``, ``n``,
        ``n_dropped``, and how it was computed.

    Raises:
        ValueError: lengths that differ, fewer than two paired cases, or an unknown method or alternative.

    Example:
        >>> from phidice.metrics import paired_test
        >>> t = paired_test([0.8, 0.9, 0.7, 0.85], [0.7, 0.8, 0.72, 0.8])
        >>> round(t.difference, 4), t.exact, t.p_value  # all 2⁴ sign patterns: exact
        (0.0575, True, 0.25)
    """
    _check_common(confidence, n_resamples, method, TEST_METHODS, "method")
    check_choice("alternative", alternative, ALTERNATIVES)
    check_choice("ci_method", ci_method, CI_METHODS)
    x, y, dropped = _paired_values(a, b, names)
    n = x.size
    d = x - y
    obs = float(d.mean())
    rng = _generator(seed)
    if np.all(d == d[0]):
        dist = np.full(n_resamples, obs)
        low = high = obs
    else:
        dist = bootstrap_means(d, n_resamples, rng)
        low, high = _interval(d, dist, confidence, ci_method)
    exact = False
    if method == "bootstrap":
        p_le = (np.count_nonzero(dist <= 0) + 1) / (n_resamples + 1)
        p_ge = (np.count_nonzero(dist >= 0) + 1) / (n_resamples + 1)
        p = {"greater": p_le, "less": p_ge, "two-sided": 2 * min(p_le, p_ge)}[alternative]
        p = float(min(p, 1.0))
    else:
        rng = rng if isinstance(seed, np.random.Generator) else _generator(seed)
        null, exact = _sign_flip_null(d, n_resamples, rng)
        p = _p_value(null, obs, alternative, 0 if exact else 1)
    return PairedTest(float(x.mean()), float(y.mean()), obs, low, high, p, n, dropped, method, exact, alternative)


def _paired_values(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, int]:
    """The cases defined for both methods (at least two), and how many were dropped."""
    x, y = _values(a, names[0]), _values(b, names[1])
    if x.shape != y.shape:
        raise ValueError(
            f"a paired test needs the same cases for both methods; {names[0]} has {x.size} values and "
            f"{names[1]} has {y.size}"
        )
    keep = ~(np.isnan(x) | np.isnan(y))
    n = int(keep.sum())
    if n < 2:
        raise ValueError(
            f"a paired test needs at least 2 cases defined for both {names[0]} and {names[1]}; got {n} (of {x.size})"
        )
    return x[keep], y[keep], int(keep.size - n)
