"""Eq. 3 and Eq. 4 of the paper as named steps on the (B, C) sums I = Σ y·ỹ, P = Σ ỹ, Y = Σ y.

Eq. 3, for any overlap index of the sums (:class:`~phidice.core.config.Overlap`; Dice: a = 2, b = (0, 1, 1)):

    DL = Σ_φ ω_φ · ℓ(T_φ),   T_φ = (a·Σ_{c∈φ} v_c I_c + ε_nr,φ) / (Σ_{c∈φ} v_c (b_I I_c + b_P P_c + b_Y Y_c) + ε_dr,φ)

with ℓ(T) = (1 − T)^γ (γ = 1: 1 − T), ω_φ the outer weights (1/|Φ| by default) and v_c the inner class weights,
which are 1 unless a φ spans several classes (Φ = CI, BCI) and class weights or a generalized weighting are
given. :func:`subset_terms` runs the steps — :func:`kept_sums`, the batch sum of Φ, :func:`inner_weights`, the
class sum of Φ, :func:`subset_eps`, :func:`outer_weights` — and :func:`loss_from_terms` takes the ratio and the
weighted sum; :func:`align_smoothing` brings ε and the class weights to the scored classes first, and
:func:`scored_loss` runs all three. Eq. 4 is :func:`eq4`: within a φ the gradient ∂DL/∂ỹ takes one value at
y = 0 and one at y = 1.

Every loss (fused or reference path, Dice, Tversky, Jaccard, leaf, marginal), :func:`phidice.dice_gradient`,
:func:`phidice.explain` and the Keras losses call these functions. They are array-generic: ``xp`` is the
namespace of array operations (:data:`phidice.core.xp.TORCH`, or :data:`phidice.keras.xp.KERAS` on keras.ops).
"""

from __future__ import annotations

from numbers import Real
from typing import Any, NamedTuple

from phidice.core.config import DICE, DiceConfig, Overlap, class_slice
from phidice.core.phi import Phi
from phidice.core.types import DiceStats

# a focal exponent γ < 1 has an infinite slope at T = 1: ℓ is evaluated on max(1 − T, FOCAL_FLOOR) there
FOCAL_FLOOR = 1e-12


class Smoothing(NamedTuple):
    """ε and class weights aligned with the classes of the sums: a float, a 0-d array, or a (1, C) row."""

    eps_nr: object
    eps_dr: object
    eps_empty: object = None
    class_weights: object = None


def config_smoothing(config: DiceConfig) -> Smoothing:
    """ε and class weights as the config gives them: floats or tuples (one per class)."""
    return Smoothing(config.eps_nr_value, config.eps_dr_value, config.eps_empty, config.class_weights)


def smoothing_names(config: DiceConfig) -> tuple[str, ...]:
    """The option each smoothing value came from, for errors (``eps`` when eps_nr/eps_dr were not given)."""
    return (
        "eps" if config.eps_nr is None else "eps_nr",
        "eps" if config.eps_dr is None else "eps_dr",
        "eps_empty",
        "class_weights",
    )


def align_smoothing(
    raw: Smoothing, config: DiceConfig, num_channels: int, like, *, xp, axis: str = "dim 1"
) -> Smoothing:
    """ε and class weights as :func:`subset_terms` takes them, on torch or keras.ops (``xp``).

    A per-class value (a tuple, or a 1-d buffer of a torch loss module) becomes a (1, C') row of ``like``'s
    dtype (and device) holding the classes the loss scores: C or C − 1 values (:func:`~phidice.core.config.
    class_slice`; ``axis`` names the class axis in its error). A scalar stays as given (a float, or a 0-d
    buffer, which adds to the sums without changing their dtype), unless ``eps_empty`` is set: then every
    scalar feeds ``xp.where`` and becomes a 0-d array of ``like``'s dtype.
    """
    scalars = config.eps_empty is not None

    def one(name, value):
        if value is None:
            return None
        if isinstance(value, tuple) or (not isinstance(value, Real) and getattr(value, "ndim", 0) > 0):
            sl = class_slice(name, len(value), num_channels, config.include_background, axis=axis)
            return xp.reshape(xp.constant(value[sl], like), (1, -1))
        return xp.constant(value, like) if scalars else value

    return Smoothing(*(one(n, v) for n, v in zip(smoothing_names(config), raw)))


class SubsetTerms(NamedTuple):
    """Eq. 3 per subset φ (shapes (Bφ, Cφ)) before the ratio, and the inner weights v (None: all 1); arrays of
    any namespace (torch, keras.ops), hence Any."""

    numerator: Any  # N_φ = a·Σ v·I + ε_nr
    denominator: Any  # D_φ = Σ v·(b_I·I + b_P·P + b_Y·Y) + ε_dr
    weight: Any  # ω_φ (normalised for "mean", raw for "sum"; 0 for skipped φ); may be a float
    skipped: Any  # bool: φ left out of the mean (None: none can be)
    inner: Any  # v, broadcastable to (B, C), or None


def _times(v, x):
    return x if v is None else v * x


def _is_row(value) -> bool:
    return not isinstance(value, Real) and getattr(value, "ndim", 0) == 2  # numbers first: see per_class_value


def kept_sums(stats: DiceStats, keep, xp) -> DiceStats:
    """The sums of the kept (image, class) entries only (the leaf Dice's annotated classes); all without ``keep``."""
    if keep is None:
        return stats
    k = xp.float(keep, stats.intersection)
    return DiceStats(*(t * k for t in stats))


def generalized_weights(target_sum, kind: str, xp):
    """Sudre's w_c = 1/(Σy)² ("generalized") or 1/Σy ("generalized_simple") per row of ``target_sum``.

    Empty classes (Σy = 0, weight ∞) take the largest weight among the non-empty classes of the same subset
    (MONAI's rule); if every class of the subset is empty, all weights are 1, so that ε alone decides it, as
    in a plain Dice. No gradient flows through the weights.
    """
    ts = xp.stop_gradient(target_sum)
    w = 1.0 / (ts * ts) if kind == "generalized" else 1.0 / ts
    inf = xp.isinf(w)
    w = xp.where(inf, 0.0, w)
    w = xp.where(inf, xp.amax(w, 1), w)
    return xp.where(xp.all(inf, 1), 1.0, w)


def inner_weights(target_sum, phi: Phi, class_weights, weighting: str | None, keep, xp):
    """v_c: the weights of the classes inside one φ (Φ ∋ C); None when every v_c is 1.

    ``target_sum`` is Y after the batch sum of Φ. Unkept classes carry no weight (and so no ε) in a class sum.
    """
    if not phi.sums_classes:
        return None
    v = class_weights
    if weighting is not None:
        v = _times(v, generalized_weights(target_sum, weighting, xp))
    if keep is not None:
        k = xp.float(keep, target_sum)
        v = _times(v, xp.amax(k, 0) if phi.sums_batch else k)
    return v


def subset_eps(eps, v, phi: Phi, xp):
    """ε_φ: a scalar ε enters each φ once; a per-class ε is a virtual volume of its class, summed (with v_c)
    over the classes a φ spans."""
    if eps is None or not _is_row(eps):
        return eps
    return phi.sum_classes(_times(v, eps), xp)


def overlap_sums(I, P, Y, v, phi: Phi, overlap: Overlap, xp):
    """(Σ_{c∈φ} v_c I_c, Σ_{c∈φ} v_c (b_I I_c + b_P P_c + b_Y Y_c)) after the batch sum of Φ."""
    if overlap.b_p == 1 and overlap.b_y == 1:
        linear = P + Y
    else:
        linear = overlap.b_p * P + overlap.b_y * Y
    if overlap.b_i:
        linear = linear + overlap.b_i * I
    return phi.sum_classes(_times(v, I), xp), phi.sum_classes(_times(v, linear), xp)


def outer_weights(target, keep, phi: Phi, class_weights, config: DiceConfig, xp):
    """(ω_φ, skipped): 1/|Φ| by default — with class weights under I/BI their normalised weighted mean — over
    the subsets that take part; a φ leaves the mean when its target is empty (``empty="skip"``) or it holds no
    kept entry. ``reduction="sum"`` keeps the raw weights."""
    skipped = (target == 0) if config.empty == "skip" else None
    if keep is not None:
        dropped = phi.reduce(xp.float(keep, target), xp) == 0
        skipped = dropped if skipped is None else skipped | dropped
    w = None if (phi.sums_classes or class_weights is None) else class_weights * xp.ones_like(target)
    if skipped is not None:
        w = _times(w, xp.float(~skipped, target))
    if config.reduction != "mean":
        return (1.0 if w is None else w), skipped
    if w is None:  # equal weights, no normalising sum needed
        return 1.0 / xp.size(target), skipped
    total = xp.total(w)
    return w / xp.where(total > 0, total, 1.0), skipped


def subset_terms(stats: DiceStats, config: DiceConfig, smoothing: Smoothing, *, keep=None, xp) -> SubsetTerms:
    """Eq. 3 up to the ratio: N_φ, D_φ and ω_φ of every φ ∈ Φ from the (B, C) sums.

    ``keep`` (B, C) bool says which (image, class) entries take part (the leaf Dice); a φ without one leaves
    the mean. ``smoothing`` holds ε and the class weights aligned with the sums' classes.
    """
    phi, overlap = config.phi, config.overlap
    I, P, Y = (phi.sum_batch(t, xp) for t in kept_sums(stats, keep, xp))
    v = inner_weights(Y, phi, smoothing.class_weights, config.weighting, keep, xp)
    inter, linear = overlap_sums(I, P, Y, v, phi, overlap, xp)
    target = phi.sum_classes(Y, xp)
    en, ed = subset_eps(smoothing.eps_nr, v, phi, xp), subset_eps(smoothing.eps_dr, v, phi, xp)
    if smoothing.eps_empty is not None:
        empty, ee = target == 0, subset_eps(smoothing.eps_empty, v, phi, xp)
        en, ed = xp.where(empty, ee, en), xp.where(empty, ee, ed)
    weight, skipped = outer_weights(target, keep, phi, smoothing.class_weights, config, xp)
    return SubsetTerms(overlap.a * inter + en, linear + ed, weight, skipped, v)


def overlap_index(numerator, denominator, xp):
    """T_φ = N_φ / D_φ, with 0/0 (ε = 0 and nothing predicted nor labelled) read as a perfect score of 1.

    Only a denominator that *is* 0 takes the convention: a NaN one (a NaN logit, or a +Inf one that makes the
    softmax NaN) gives a NaN T_φ, so a diverged network never reads as a perfect fit.
    """
    empty = denominator <= 0  # False for NaN: NaN in, NaN out
    return xp.where(empty, 1.0, numerator / xp.where(empty, 1.0, denominator))


def subset_loss(index, gamma: float, xp):
    """ℓ(T) = 1 − T, or (1 − T)^γ for a focal exponent (never negative, finite slope)."""
    if gamma == 1:
        return 1 - index
    return xp.power(xp.maximum(1 - index, FOCAL_FLOOR if gamma < 1 else 0.0), gamma)


def loss_from_terms(terms: SubsetTerms, config: DiceConfig, xp):
    """DL = Σ_φ ω_φ ℓ(T_φ); ``reduction="none"``: ℓ(T_φ) per φ, unweighted, 0 for skipped φ."""
    per_subset = subset_loss(overlap_index(terms.numerator, terms.denominator, xp), config.overlap.gamma, xp)
    if config.reduction == "none":
        return per_subset if terms.skipped is None else xp.where(terms.skipped, 0.0, per_subset)
    if isinstance(terms.weight, float):
        return xp.total(per_subset) * terms.weight
    return xp.total(terms.weight * per_subset)


def scored_loss(
    stats: DiceStats, config: DiceConfig, raw: Smoothing, *, num_channels: int, keep=None, xp, axis="dim 1"
):
    """DL of Eq. 3 from the (B, C') sums of the scored classes, for torch and Keras alike: ε and weights
    (``raw``, floats, tuples or buffers) aligned with the sums (:func:`align_smoothing`), then the subsets φ
    and the ratio. ``num_channels`` is C of the input; ``keep`` (B, C') the entries that take part."""
    smoothing = align_smoothing(raw, config, num_channels, stats.intersection, xp=xp, axis=axis)
    return loss_from_terms(subset_terms(stats, config, smoothing, keep=keep, xp=xp), config, xp)


def eq4(numerator, denominator, weight=1.0, overlap: Overlap = DICE):
    """Eq. 4: (∂DL/∂I_c, ∂DL/∂P_c) of one subset φ with N_φ, D_φ (> 0) and weight ω_φ, for a class of inner
    weight 1 (multiply both by v_c otherwise). At a voxel of φ, ∂DL/∂ỹ = ∂DL/∂I · y + ∂DL/∂P: one value at
    y = 0 (∂DL/∂P) and one at y = 1 (their sum). Dice: ∂DL/∂I = −2ω/D, ∂DL/∂P = ω·N/D².

    Plain arithmetic, so it serves tensors and NumPy arrays alike (the Eq. 5 curves of ``explain``).
    """
    d2 = denominator * denominator
    dl_dt = -weight
    if overlap.gamma != 1:  # ℓ = max(1 − T, floor)^γ: slope γ·(1 − T)^(γ−1) above the floor, 0 below
        base = 1 - numerator / denominator
        ok = (base >= (FOCAL_FLOOR if overlap.gamma < 1 else 0.0)) * 1.0
        dl_dt = dl_dt * overlap.gamma * (base * ok + (1 - ok)) ** (overlap.gamma - 1) * ok
    d_inter = dl_dt * (overlap.a * denominator - overlap.b_i * numerator) / d2
    d_pred = dl_dt * (-overlap.b_p * numerator) / d2
    return d_inter, d_pred


def heuristic_eps_scale(overlap: Overlap = DICE, fraction: float = 0.5) -> float:
    """c in the heuristic ε = c·E[Σ_φ y] (Eq. 5, Sect. 2.3) for any overlap index; 1 for the Dice loss.

    Eq. 5 asks that an empty map under Φ = I with ε get the y = 0 gradient that a non-empty map gets under
    Φ = BI with an infinite batch and a negligible ε. With a predicted volume v̂ ≈ Y ≈ P and an intersection
    ``fraction``·v̂, Eq. 4 gives (per v̂) b_P·A·a/K² · f(A·a/K) for the non-empty map, K = b_I·a + b_P + b_Y, and
    b_P·c/(b_P + c)² · f(c/(b_P + c)) for the empty one, f(T) = γ(1 − T)^(γ−1). The empty side rises with c up
    to a maximum and falls after it; c is the root on the falling side, where the push on an empty map barely
    depends on how much is predicted there (for Dice the two roots meet at c = 1: ε = v̂). When no c reaches
    the target, the c of the maximum is returned.
    """
    if overlap.b_p == 0:
        raise ValueError(
            "no ε gives an empty map a gradient when false positives weigh nothing (b_P = 0, e.g. "
            "Tversky alpha = 0): there is no heuristic ε; use alpha > 0"
        )
    a, gamma = fraction, overlap.gamma
    K = overlap.b_i * a + overlap.b_p + overlap.b_y

    def focal(t: float) -> float:
        return 1.0 if gamma == 1 else gamma * max(1.0 - t, FOCAL_FLOOR) ** (gamma - 1)

    def empty(c: float) -> float:
        return overlap.b_p * c / (overlap.b_p + c) ** 2 * focal(c / (overlap.b_p + c))

    target = overlap.b_p * overlap.a * a / K**2 * focal(overlap.a * a / K)
    grid = [overlap.b_p * 10 ** (k / 50) for k in range(-200, 201)]
    peak = max(grid, key=empty)
    if empty(peak) <= target:
        return peak
    lo, hi = peak, peak
    while empty(hi) > target:
        hi *= 2.0
    for _ in range(200):  # bisection on the falling side
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if empty(mid) > target else (lo, mid)
    return (lo + hi) / 2


def entry_gradients(terms: SubsetTerms, config: DiceConfig, xp):
    """Eq. 4 per (image, class) entry: (∂DL/∂I, ∂DL/∂P), v_c included, broadcastable to the (B, C') sums.

    A φ whose D_φ is 0 (0/0, read as a perfect score) has zero gradient; a NaN D_φ stays NaN.
    """
    N, D = terms.numerator, terms.denominator
    empty = D <= 0
    d_inter, d_pred = eq4(N, xp.where(empty, 1.0, D), terms.weight, config.overlap)
    d_inter, d_pred = xp.where(empty, 0.0, d_inter), xp.where(empty, 0.0, d_pred)
    if terms.inner is not None:
        d_inter, d_pred = d_inter * terms.inner, d_pred * terms.inner
    return d_inter, d_pred
