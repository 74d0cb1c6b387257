"""One frozen, validated configuration for every loss built on the sums of Eq. 3.

:class:`DiceConfig` holds the options of :func:`phidice.dice_loss` (Φ, ε, activation, weights, empty rule, …),
checked once when it is built — at module construction, or once per functional call — so that a bad option
fails where it is written, not at the first forward. The losses, the missing-label losses, ``explain``, the
Keras losses and the integrations all take their options from it. It holds plain Python values (a per-class
ε is a tuple of floats); the modules keep ε and the class weights as tensors in registered buffers.

:class:`Overlap` says which index of the three sums a loss uses (Dice, Tversky, Jaccard; see
:mod:`phidice.equations`). :class:`CEConfig` holds the cross-entropy options of the compound losses.
No torch import: this module is shared with :mod:`phidice.keras`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal, cast, get_args

from phidice.core.phi import Phi, parse_phi

DEFAULT_EPS = 1e-5  # the library's negligible ε (MONAI's and nnU-Net's trainer value)

# the choices of the options, as the types of their fields (the signatures of the losses show them)
PhiName = Literal["I", "CI", "BI", "BCI"]


def accepts(kind: Any) -> dict:
    """Field metadata: the types a field *accepts* (its signature's annotation) where ``__post_init__``
    normalises them to the narrower type the field is annotated with (what code reading the config sees)."""
    return {"accepts": kind}


Activation = Literal["softmax", "sigmoid"]
Reduction = Literal["mean", "sum", "none"]
EmptyMode = Literal["smooth", "skip"]
Weighting = Literal["generalized", "generalized_simple"]

ACTIVATIONS = (*get_args(Activation), None)
REDUCTIONS = get_args(Reduction)
EMPTY_MODES = get_args(EmptyMode)  # how a subset φ with an empty target enters a *loss*; see EMPTY_SCORES
WEIGHTINGS = (None, *get_args(Weighting))
FUSED = (True, False, "auto")

# How the *metrics* score a φ whose reference is empty (phidice.metrics.dice_score, phidice evaluate). The
# loss's "skip" leaves such a φ out of the mean, as the metrics' "nan" does; the loss's "smooth" lets ε decide,
# and ε = 0 with nothing predicted reads as DSC 1, the metrics' "one".
EMPTY_SCORES = ("nan", "ratio", "one", "zero")
_EMPTY_COUNTERPART = {"skip": "nan", "nan": "skip", "smooth": "one", "one": "smooth"}


def check_empty(value, kind: str) -> None:
    """``value`` is one of the loss's (``kind="loss"``) or the metrics' (``"score"``) empty rules; a value of
    the other vocabulary gets a pointer to its counterpart."""
    choices = EMPTY_MODES if kind == "loss" else EMPTY_SCORES
    if value in choices:
        return
    shown = ", ".join(repr(c) for c in choices)
    hint = ""
    if value in (EMPTY_SCORES if kind == "loss" else EMPTY_MODES):
        other = "score" if kind == "loss" else "loss"
        counterpart = _EMPTY_COUNTERPART.get(value)
        hint = f" ({value!r} is a {other} rule" + (
            f"; the {kind}'s counterpart is {counterpart!r})" if counterpart else ")"
        )
    raise ValueError(f"empty must be one of {shown}; got {value!r}{hint}")


def check_choice(name: str, value, choices) -> None:
    """ValueError naming ``name`` and the allowed values unless ``value`` is one of ``choices``."""
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {shown}; got {value!r}")


def check_activation(activation):
    """The activation in canonical form ("softmax", "sigmoid" or None, any case), or a callable kept as it is.

    A callable (MONAI's ``other_act``, e.g. ``torch.tanh``) maps the input (B, C, *S) to probabilities of the
    same shape; it runs on the reference path (the fused kernels know softmax and sigmoid only).
    """
    if callable(activation) and not isinstance(activation, (str, bytes)):
        return activation
    if isinstance(activation, str):
        activation = activation.lower()
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of 'softmax', 'sigmoid', None or a callable; got {activation!r}")
    return activation


def check_flag(name: str, value) -> bool:
    if value not in (True, False) or isinstance(value, float):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _finite(v) -> bool:
    """math.isfinite by comparisons, which torch.compile also traces for a symbolic float (dynamic=True)."""
    return v == v and -math.inf < v < math.inf


def check_number(name: str, value, *, low: float = 0.0, high: float = math.inf) -> float:
    """A real number in [low, high] as a float (bools refused: a flag passed as a weight is a bug)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not low <= float(value) <= high:
        bound = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f"≥ {low:g}"
        raise ValueError(f"{name} must be a number {bound}; got {value!r}")
    return float(value)


def per_class_value(value, name: str, *, allow_none: bool = False):
    """A float, or a tuple of floats (one per class): finite and ≥ 0.

    Accepts numbers, sequences, numpy arrays and torch tensors (read once, here, on the host).
    """
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a non-negative number or a sequence of one per class; got None")
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got bool")
    raw = value
    # numbers first: under torch.compile(dynamic=True) a float argument is symbolic, and dynamo cannot trace
    # hasattr on it
    if not isinstance(value, Real) and hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # tensor or ndarray; a 0-d one gives a number
    if isinstance(value, Real):
        v = float(value)
        if not _finite(v) or v < 0:
            raise ValueError(f"{name} must be finite and ≥ 0; got {v}")
        return v
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {raw!r}")
    items = list(value)
    if any(hasattr(v, "__iter__") and not isinstance(v, (str, bytes)) for v in items):
        shape = (len(items), len(items[0])) if items and hasattr(items[0], "__len__") else (len(items),)
        raise ValueError(f"{name} must be a scalar or 1-D (one value per class); got shape {shape}")
    if not items:
        raise ValueError(f"{name} must hold at least one value (one per class); got an empty sequence")
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {raw!r}")
    out = tuple(float(v) for v in items)
    if not all(_finite(v) for v in out):
        raise ValueError(f"{name} must be finite; got {list(out)}")
    if any(v < 0 for v in out):
        raise ValueError(f"{name} must be ≥ 0; got {list(out)}")
    return out


def class_slice(name: str, length: int, num_channels: int, include_background: bool, *, axis: str = "dim 1") -> slice:
    """Which entries of a per-class vector of ``length`` values align with the classes the loss scores.

    A vector may have C values (the input's channels; the background entry is dropped when
    ``include_background=False``) or C − 1 (already without background). Anything else is an error, which
    names the channel ``axis`` of the caller's layout ("dim 1" for PyTorch's (B, C, *spatial)).
    """
    drop_bg = not include_background and num_channels > 1
    expected = num_channels - 1 if drop_bg else num_channels
    if length == num_channels and drop_bg:
        return slice(1, None)
    if length != expected:
        extra = f" or {num_channels} (with background, dropped)" if drop_bg else ""
        raise ValueError(
            f"{name} has {length} values but the input has {num_channels} classes: expected "
            f"{expected}{extra} values, one per class along {axis}"
        )
    return slice(None)


@dataclass(frozen=True)
class Overlap:
    """The overlap index of one subset φ, linear-fractional in its sums I (Σ y·ỹ), P (Σ ỹ) and Y (Σ y):

        T_φ = (a·I + ε_nr) / (b_I·I + b_P·P + b_Y·Y + ε_dr),   loss per φ: (1 − T_φ)^γ

    Dice: a = 2, (b_I, b_P, b_Y) = (0, 1, 1). Tversky (α, β): a = 1, (1 − α − β, α, β), since
    FP = P − I and FN = Y − I. Jaccard: a = 1, (−1, 1, 1). Focal Tversky: γ ≠ 1.
    """

    name: str = "dice"
    a: float = 2.0
    b_i: float = 0.0
    b_p: float = 1.0
    b_y: float = 1.0
    gamma: float = 1.0

    def __post_init__(self):
        for key in ("a", "b_i", "b_p", "b_y", "gamma"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, Real) or not _finite(value):
                raise ValueError(f"Overlap.{key} must be a finite number; got {value!r}")
        if self.a <= 0 or self.gamma <= 0:
            raise ValueError(f"Overlap needs a > 0 and gamma > 0; got a = {self.a}, gamma = {self.gamma}")
        # I ≤ min(P, Y) for probabilities: b_P, b_Y ≥ 0 and b_I + b_P + b_Y > 0 keep the denominator ≥ 0, and > 0
        # wherever the overlap is
        if self.b_p < 0 or self.b_y < 0 or self.b_i + self.b_p + self.b_y <= 0:
            raise ValueError(
                f"Overlap needs b_p ≥ 0, b_y ≥ 0 and b_i + b_p + b_y > 0 (else its denominator can "
                f"vanish or turn negative); got b_i = {self.b_i}, b_p = {self.b_p}, b_y = {self.b_y}"
            )


DICE = Overlap()
JACCARD = Overlap("jaccard", 1.0, -1.0, 1.0, 1.0)


def tversky(alpha: float, beta: float, gamma: float = 1.0) -> Overlap:
    """The Tversky index with weights α (false positives) and β (false negatives); α = β = ½ is Dice."""
    alpha = check_number("alpha", alpha)
    beta = check_number("beta", beta)
    if alpha + beta <= 0:
        raise ValueError(f"alpha + beta must be > 0 (else the index has no denominator); got {alpha} + {beta}")
    gamma = check_number("gamma", gamma)
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0; got {gamma}")
    for key, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not _finite(value):
            raise ValueError(f"{key} must be finite; got {value}")
    return Overlap("tversky", 1.0, 1.0 - alpha - beta, alpha, beta, gamma)


@dataclass(frozen=True)
class DiceConfig:
    """The validated options of a loss on the sums of Eq. 3 (see :func:`phidice.dice_loss` for each).

    Build it with keywords; every option is checked here and a ``ValueError``/``TypeError`` names the bad
    one. ``validate_args=False`` skips, per call, every check that reads tensor values on the host (label
    range, target/mask in [0, 1], integer-valued float labels, the ``annotated`` flags): use it in a hot loop
    once the data are known to be valid — bad values then give wrong numbers or an indexing error instead of
    a clear message. Shapes and dtypes are always checked; ``check_finite=True`` is honoured either way.

    Raises:
        ValueError / TypeError: an unknown Φ, activation, reduction, empty rule, weighting or fused value;
            a negative or non-finite ε or weight; weighting with a Φ that does not sum classes.
    """

    phi: Phi = dataclasses.field(default=Phi.I, metadata=accepts(Phi | PhiName))
    eps: float | tuple[float, ...] = DEFAULT_EPS
    eps_nr: float | tuple[float, ...] | None = None
    eps_dr: float | tuple[float, ...] | None = None
    eps_empty: float | tuple[float, ...] | None = None
    activation: Activation | None = "softmax"
    squared: bool = False
    include_background: bool = True
    class_weights: float | tuple[float, ...] | None = None
    weighting: Weighting | None = None
    empty: EmptyMode = "smooth"
    ignore_index: int | None = None
    reduction: Reduction = "mean"
    check_finite: bool = False
    fused: bool | Literal["auto"] = "auto"
    sync_batch: bool = False
    validate_args: bool = True
    # None: Dice (a literal default, which torch.compile can trace); always an Overlap after __post_init__
    overlap: Overlap = dataclasses.field(default=cast(Overlap, None), metadata=accepts(Overlap | None))
    # MONAI's soft_label: I = Σ m·min(ỹ, y) = Σ m·(ỹ + y − |ỹ − y|)/2, the intersection that stays right for
    # y ∈ (0, 1) (on hard targets it is Σ m·y·ỹ); with squared=True, I = Σ y·ỹ already is MONAI's soft form
    soft_label: bool = False

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)  # a bound __get__ does not trace under torch.compile
        put("phi", parse_phi(self.phi))
        put("activation", check_activation(self.activation))
        for name in ("eps", "eps_nr", "eps_dr", "eps_empty", "class_weights"):
            put(name, per_class_value(getattr(self, name), name, allow_none=name != "eps"))
        for name in ("squared", "include_background", "check_finite", "sync_batch", "validate_args", "soft_label"):
            put(name, check_flag(name, getattr(self, name)))
        check_choice("weighting", self.weighting, WEIGHTINGS)
        check_empty(self.empty, "loss")
        check_choice("reduction", self.reduction, REDUCTIONS)
        if not (isinstance(self.fused, str) and self.fused == "auto"):
            if self.fused not in FUSED or isinstance(self.fused, float):
                raise ValueError(f"fused must be True, False or 'auto'; got {self.fused!r}")
            put("fused", bool(self.fused))  # the users test `is True` / `is False`
        if self.ignore_index is not None:
            if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, Integral):
                raise TypeError(f"ignore_index must be an integer or None; got {self.ignore_index!r}")
            put("ignore_index", int(self.ignore_index))
        if self.weighting is not None and not self.phi.sums_classes:
            raise ValueError(
                f"weighting={self.weighting!r} weighs classes inside one Dice ratio and needs a Φ that sums over "
                f"classes ('CI' or 'BCI'); got phi={self.phi.value!r}"
            )
        if self.overlap is None:
            put("overlap", DICE)
        if not isinstance(self.overlap, Overlap):
            raise TypeError(f"overlap must be an Overlap; got {type(self.overlap).__name__}")
        o = self.overlap
        if self.squared and o.b_i < 0 and o.b_i**2 > 4 * o.b_p * o.b_y:
            # squared sums only bound I by √(P·Y): b_P·P + b_Y·Y + b_I·I ≥ 0 needs b_I² ≤ 4·b_P·b_Y
            raise ValueError(
                f"squared=True with this {o.name} index can make its denominator negative (b_I² > "
                f"4·b_P·b_Y: b_i = {o.b_i}, b_p = {o.b_p}, b_y = {o.b_y}; for Tversky, "
                f"(√alpha − √beta)² > 1); use squared=False"
            )

    @property
    def eps_nr_value(self):
        """ε of the numerator: ``eps_nr``, else ``eps``."""
        return self.eps if self.eps_nr is None else self.eps_nr

    @property
    def eps_dr_value(self):
        """ε of the denominator: ``eps_dr``, else ``eps``."""
        return self.eps if self.eps_dr is None else self.eps_dr

    def replace(self, **changes) -> DiceConfig:
        """A copy with some options changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready options (Φ as its name, per-class values as lists); :meth:`from_dict` rebuilds it."""
        out = dataclasses.asdict(self)
        out["phi"] = self.phi.value
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def build(cls, config: DiceConfig | None = None, options: dict | None = None) -> DiceConfig:
        """``config`` with ``options`` applied on top (validated again), or a new config from ``options``."""
        if config is None:
            return cls(**(options or {}))
        if not isinstance(config, DiceConfig):
            raise TypeError(f"config must be a DiceConfig; got {type(config).__name__}")
        return config.replace(**options) if options else config

    @classmethod
    def from_dict(cls, options: dict) -> DiceConfig:
        """The config that :meth:`to_dict` wrote (the overlap given as a dict)."""
        options = dict(options)
        if isinstance(options.get("overlap"), dict):
            options["overlap"] = Overlap(**options["overlap"])
        return cls(**options)

    def describe(self) -> str:
        """The options that differ from the defaults, as ``name=value`` pairs (for reprs and logs)."""
        default = DiceConfig()
        parts = [f"phi={self.phi.value!r}"]
        for f in dataclasses.fields(self):
            if f.name != "phi" and getattr(self, f.name) != getattr(default, f.name):
                parts.append(f"{f.name}={getattr(self, f.name)!r}")
        return ", ".join(parts)


@dataclass(frozen=True)
class CEConfig:
    """Options of the cross-entropy term of the compound losses (λ_dice · Dice + λ_ce · CE).

    ``ce_weight`` weighs classes as ``torch.nn.functional.cross_entropy`` does (a weighted mean over voxels);
    ``label_smoothing`` in [0, 1] as in torch (for BCE: targets y·(1 − s) + s/2).
    """

    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    ce_weight: tuple[float, ...] | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)  # a bound __get__ does not trace under torch.compile
        put("lambda_dice", check_number("lambda_dice", self.lambda_dice))
        put("lambda_ce", check_number("lambda_ce", self.lambda_ce))
        put("label_smoothing", check_number("label_smoothing", self.label_smoothing, high=1.0))
        weight = per_class_value(self.ce_weight, "ce_weight", allow_none=True)
        put("ce_weight", (weight,) if isinstance(weight, float) else weight)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if out["ce_weight"] is not None:
            out["ce_weight"] = list(out["ce_weight"])
        return out


_FIELD_NAMES: dict = {}


def field_names(cls) -> frozenset:
    """The option names of a config class, read once (``dataclasses.fields`` does not trace under
    ``torch.compile``, so a loss built inside a compiled function reads this cache)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


def split_options(options: dict) -> tuple[dict, dict]:
    """Split keyword options into (DiceConfig fields, CEConfig fields); an unknown name is a TypeError."""
    dice_names, ce_names = field_names(DiceConfig), field_names(CEConfig)
    unknown = sorted(set(options) - dice_names - ce_names)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; the options are those of "
            f"DiceConfig ({', '.join(sorted(dice_names))}) and CEConfig ({', '.join(sorted(ce_names))})"
        )
    return ({k: v for k, v in options.items() if k in dice_names}, {k: v for k, v in options.items() if k in ce_names})


FOCAL_ACTIVATIONS = (None, "softmax", "sigmoid")


def _alpha_value(alpha):
    """``alpha``: None, a number in [0, 1], or one number in [0, 1] per class (a tuple)."""
    value = per_class_value(alpha, "alpha", allow_none=True)
    values = value if isinstance(value, tuple) else (() if value is None else (value,))
    if any(v > 1 for v in values):
        raise ValueError(f"alpha must lie in [0, 1] (the weight of the positive class); got {alpha!r}")
    return value


@dataclass(frozen=True)
class FocalConfig:
    """Options of the focal term of :class:`phidice.DiceFocalLoss` (λ_dice · Dice + λ_focal · focal).

    The focal term (Lin et al. 2017) as MONAI's ``FocalLoss`` defines it: per (voxel, class) for sigmoid,
    ℓ = BCE(x, y)·(1 − p_t)^γ with p_t = p for y = 1 and 1 − p for y = 0; per voxel for softmax,
    ℓ = −Σ_c α_c (1 − p_c)^γ y_c log p_c. γ = 0 without α is the (binary) cross-entropy.

    Args:
        gamma: the focusing exponent γ ≥ 0.
        alpha: None; a number in [0, 1] — sigmoid: α for y = 1 and 1 − α for y = 0; softmax: 1 − α for the
            background class and α for the others; or one value in [0, 1] per class — sigmoid: α_c where
            y = 1 and 1 where y = 0; softmax: α_c.
        focal_weight: per-class factors (MONAI's ``weight`` of ``FocalLoss``), a number or one per class.
        lambda_dice, lambda_focal: the weights of the two terms, ≥ 0.
        focal_activation: None (the Dice term's activation), "softmax" or "sigmoid". MONAI's
            ``DiceFocalLoss`` always takes the sigmoid focal term, also with ``softmax=True``.

    Raises:
        ValueError: γ < 0 or not finite, α outside [0, 1], a negative weight or λ, an unknown activation.
    """

    gamma: float = 2.0
    alpha: float | tuple[float, ...] | None = None
    focal_weight: float | tuple[float, ...] | None = None
    lambda_dice: float = 1.0
    lambda_focal: float = 1.0
    focal_activation: str | None = None

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)  # a bound __get__ does not trace under torch.compile
        gamma = check_number("gamma", self.gamma)
        if not _finite(gamma):
            raise ValueError(f"gamma must be a finite number ≥ 0; got {self.gamma!r}")
        put("gamma", gamma)
        put("alpha", _alpha_value(self.alpha))
        put("focal_weight", per_class_value(self.focal_weight, "focal_weight", allow_none=True))
        for name in ("lambda_dice", "lambda_focal"):
            value = check_number(name, getattr(self, name))
            if not _finite(value):
                raise ValueError(f"{name} must be a finite number ≥ 0; got {value!r}")
            put(name, value)
        activation = self.focal_activation.lower() if isinstance(self.focal_activation, str) else self.focal_activation
        check_choice("focal_activation", activation, FOCAL_ACTIVATIONS)
        put("focal_activation", activation)

    def activation_for(self, config: DiceConfig):
        """The focal term's activation: ``focal_activation``, else the Dice term's."""
        return config.activation if self.focal_activation is None else self.focal_activation

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out


def split_focal_options(options: dict) -> tuple[dict, dict]:
    """Split keyword options into (DiceConfig fields, FocalConfig fields); an unknown name is a TypeError."""
    dice_names, focal_names = field_names(DiceConfig), field_names(FocalConfig)
    unknown = sorted(set(options) - dice_names - focal_names)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; the options are those of DiceConfig "
            f"({', '.join(sorted(dice_names))}) and FocalConfig ({', '.join(sorted(focal_names))})"
        )
    return (
        {k: v for k, v in options.items() if k in dice_names},
        {k: v for k, v in options.items() if k in focal_names},
    )


for _cls in (DiceConfig, CEConfig, FocalConfig):
    field_names(_cls)  # filled at import, before any compiled function can ask
