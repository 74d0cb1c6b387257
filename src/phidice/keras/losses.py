"""Keras 3 losses with explicit reduction subsets Φ and smoothing ε: Dice, Dice + cross-entropy, Dice + focal,
leaf and marginal Dice.

Each loss builds the :class:`~phidice.core.config.DiceConfig` of the PyTorch losses from its arguments (so a bad
option raises the same error), computes the (B, C) sums of Eq. 3 with ``keras.ops`` (:mod:`phidice.keras.sums`)
and hands them to :mod:`phidice.equations` with the :class:`~phidice.keras.xp.KerasOps` namespace: Φ, ε, the
weights and the ratio are the PyTorch code itself.

A Dice over Φ ∋ B is not a mean of per-sample losses: the losses return one value (per φ with
``reduction="none"``) and take no ``sample_weight``. With Φ ∋ B a subset φ spans the batch the loss sees — per
replica under ``tf.distribute`` (see docs/keras.md).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple

import keras
from keras import ops
from phidice.core import steps
from phidice.core.config import DEFAULT_EPS, CEConfig, DiceConfig, FocalConfig
from phidice.core.rules import check_compound, check_marginal
from phidice.core.signature import config_signature
from phidice.core.supersets import check_superset_map
from phidice.core.types import DiceStats, drop_background
from phidice.equations import config_smoothing, scored_loss
from phidice.keras.ce import cross_entropy
from phidice.keras.checks import Checks
from phidice.keras.focal import focal_term
from phidice.keras.layout import Layout, standardize_data_format
from phidice.keras.missing import all_annotated, check_annotated, check_unannotated_labels, split_supersets
from phidice.keras.sums import Prepared, check_pred, prepare_target, sum_stats
from phidice.keras.xp import KERAS

__all__ = [
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "LeafDiceLoss",
    "MarginalDiceLoss",
    "loss_from_stats",
    "loss_from_sums",
]

_TORCH_ONLY = {
    "fused": "the fused kernels belong to the PyTorch losses; the Keras losses run keras.ops on every back end",
    "sync_batch": "it gathers the batch over torch.distributed ranks; under tf.distribute Φ ∋ B spans the batch "
    "of one replica (docs/keras.md says what to do)",
}
# the DiceConfig fields the Keras losses do not take: the torch-only ones and the index (Dice only here)
KERAS_SKIP = (*_TORCH_ONLY, "overlap")
# the options of a Keras loss and the keys of its get_config: every other DiceConfig field
KERAS_OPTIONS = tuple(f.name for f in dataclasses.fields(DiceConfig) if f.name not in KERAS_SKIP)
CE_OPTIONS = tuple(f.name for f in dataclasses.fields(CEConfig))


def _reject(owner: str, options: dict) -> None:
    for name in options:
        if name in _TORCH_ONLY:
            raise TypeError(f"{owner} has no {name!r} option: {_TORCH_ONLY[name]}")
    unsupported = set(options) - set(KERAS_OPTIONS)
    if unsupported:
        raise TypeError(f"{owner} got unexpected keyword argument(s) {', '.join(map(repr, sorted(unsupported)))}")


def eq3_of_sums(stats: DiceStats, config: DiceConfig, *, num_channels: int, keep=None, axis: str = "the last axis"):
    """The loss of Eq. 3 from the (B, C') sums of the scored classes: :mod:`phidice.equations` on ``keras.ops``.

    ``num_channels`` (C) and ``include_background`` say how per-class ε and weights align with the sums;
    ``keep`` (B, C') bool: the (image, class) entries that take part (the leaf Dice).
    """
    return scored_loss(
        stats, config, config_smoothing(config), num_channels=num_channels, keep=keep, xp=KERAS, axis=axis
    )


@config_signature(DiceConfig, skip=KERAS_SKIP)
def loss_from_stats(stats: DiceStats, *, keep=None, num_channels: int | None = None, config=None, **options):
    """The loss of Eq. 3 from (B, C') sums on ``keras.ops``, the Keras form of :func:`phidice.loss_from_stats`
    (same name, arguments and numbers).

    Args:
        stats: the per-(image, class) sums I, P, Y, each (B, C') (any back end's tensors or numpy arrays).
        keep: (B, C') bool, the (image, class) entries that take part (leaf Dice); None: all.
        num_channels: C of the input; with ``include_background`` it says how per-class ε and weights align
            when the sums lack the background column (default: C').
        config, **options: a built :class:`~phidice.core.config.DiceConfig` and options on top of it, as the
            Keras losses take them (not ``fused``, ``sync_batch``, ``overlap``).

    Raises:
        ValueError / TypeError: ``keep`` of another shape than the sums, a bad option, or a PyTorch-only one.

    Example:
        >>> import numpy as np
        >>> from phidice import DiceStats
        >>> from phidice.keras import loss_from_stats
        >>> stats = DiceStats(np.array([[0.9, 0.8]]), np.array([[1.1, 0.9]]), np.array([[1.0, 1.0]]))
        >>> round(float(loss_from_stats(stats, phi="I", eps=0.0)), 4)  # mean of 1 − 1.8/2.1 and 1 − 1.6/1.9
        0.1504
    """
    _reject("loss_from_stats", options)
    config = DiceConfig.build(config, options)
    stats = DiceStats(*(ops.convert_to_tensor(t) for t in stats))
    shape = tuple(stats.intersection.shape)
    if keep is not None:
        keep = ops.convert_to_tensor(keep)
        if tuple(keep.shape) != shape:
            raise ValueError(f"keep must have shape (B, C) = {shape}; got {tuple(keep.shape)}")
    C = shape[1] if num_channels is None else num_channels
    return eq3_of_sums(stats, config, num_channels=C, keep=keep, axis="axis 1 of the sums")


def loss_from_sums(stats: DiceStats, config: DiceConfig, *, num_channels: int, keep=None, axis: str = "the last axis"):
    """Deprecated: :func:`loss_from_stats` (the name and arguments of :func:`phidice.loss_from_stats`)."""
    warnings.warn(
        "phidice.keras.loss_from_sums is deprecated: use phidice.keras.loss_from_stats(stats, config=config, "
        "num_channels=..., keep=...), the name and arguments of phidice.loss_from_stats",
        DeprecationWarning,
        stacklevel=2,
    )
    return eq3_of_sums(stats, config, num_channels=num_channels, keep=keep, axis=axis)


def scale_for_replicas(loss, reduction: str):
    """Under ``tf.distribute`` a "mean" loss is divided by the number of replicas, as Keras's own losses are,
    so that the replicas' summed gradients are their mean; Keras reports the value unscaled."""
    if reduction != "mean" or keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * (1.0 / replicas)


_KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": "none"}


class Sums(NamedTuple):
    """What a loss computes before Eq. 3: the (B, C) sums of every channel, the prepared target, and for the
    missing-label losses the (B, C) bool ``keep`` (the entries in the Dice) and ``annotated`` flags."""

    stats: DiceStats
    prepared: Prepared
    keep: Any = None
    annotated: Any = None


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


class _PhiLoss(keras.losses.Loss):
    """What the Keras losses share: the :class:`DiceConfig`, the layout, the value checks, ``get_config``."""

    def __init__(self, phi="I", eps=DEFAULT_EPS, *, data_format: str | None = None, name: str | None = None, **options):
        _reject(type(self).__name__, options)
        self.config = DiceConfig(phi=phi, eps=eps, **options)
        self.data_format = standardize_data_format(data_format)
        self._layout = Layout(self.data_format)
        # Keras's word for a mean is "sum_over_batch_size" (older Keras 3 releases know no other)
        super().__init__(name=name, reduction=_KERAS_REDUCTION[self.config.reduction])

    @property
    def phi(self):
        return self.config.phi

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} takes no sample_weight (nor model.fit's class_weight): a Dice over subsets "
                f"φ is not a mean of per-sample losses. Weigh classes with class_weights=, leave voxels out with "
                f"ignore_index="
            )
        with keras.name_scope(self.name):
            return self.call(y_true, y_pred)

    def call(self, y_true, y_pred):
        return self._compute(y_true, y_pred)

    def _compute(self, y_true, y_pred, **extra):
        checks = Checks(self.config.validate_args)
        y_pred = ops.convert_to_tensor(y_pred)
        num_channels = check_pred(y_pred, self.config, self._layout, checks)
        loss = self._loss(y_true, y_pred, num_channels, checks, **extra)
        return scale_for_replicas(checks.guard(loss), self.config.reduction)

    def _sums(self, y_true, y_pred, num_channels: int, checks: Checks, annotated=None) -> Sums:
        """The per-(b, c) sums of every channel (differentiable) and the prepared target."""
        prepared = prepare_target(y_true, tuple(y_pred.shape), self.config, self._layout, checks)
        return Sums(sum_stats(self._layout.to_last(y_pred), prepared, self.config), prepared)

    def monitor_sums(self, y_true, y_pred, annotated=None) -> tuple[Sums, int]:
        """The loss's own :class:`Sums` of a batch and its number of channels C, for
        :class:`phidice.keras.GradientMonitorCallback` (value checks are the loss's: not repeated here)."""
        y_pred = ops.convert_to_tensor(y_pred)
        checks = Checks(False)
        num_channels = check_pred(y_pred, self.config, self._layout, checks)
        return self._sums(y_true, y_pred, num_channels, checks, annotated), num_channels

    def _dice(self, stats: DiceStats, num_channels: int, keep=None):
        return eq3_of_sums(stats, self.config, num_channels=num_channels, keep=keep, axis=self._layout.axis_name)

    def get_config(self) -> dict:
        c = self.config
        out = {"name": self.name, **{key: _plain(getattr(c, key)) for key in KERAS_OPTIONS}}
        out["phi"] = c.phi.value
        out["data_format"] = self.data_format
        return out


@keras.saving.register_keras_serializable(package="phidice")
@config_signature(DiceConfig, skip=KERAS_SKIP)
class DiceLoss(_PhiLoss):
    """Dice loss of Eq. 3 with explicit Φ and ε, the Keras form of :class:`phidice.DiceLoss`.

    ``loss(y_true, y_pred)``: ``y_pred`` logits (B, *spatial, C) (probabilities with ``activation=None``;
    ``data_format="channels_first"`` for (B, C, *spatial)); ``y_true`` integer labels (B, *spatial) or
    (B, *spatial, 1), or a one-hot/soft map of ``y_pred``'s shape. The options are those of
    :func:`phidice.dice_loss` (``phi``, ``eps``, ``eps_nr``, ``eps_dr``, ``eps_empty``, ``activation``,
    ``squared``, ``include_background``, ``class_weights``, ``weighting``, ``empty``, ``ignore_index``,
    ``reduction``, ``check_finite``, ``validate_args``), checked here.

    Args:
        phi, eps, …: the options of :func:`phidice.dice_loss` but ``fused``, ``sync_batch`` and ``overlap``
            (PyTorch only); :meth:`get_config` writes the same fields.
        data_format: "channels_last" (default, Keras's) or "channels_first".
        name: the loss's name in Keras logs.

    Raises:
        ValueError / TypeError: a bad option, or a PyTorch-only one (with the reason).

    Example:
        >>> import numpy as np
        >>> from phidice.keras import DiceLoss
        >>> y_pred = np.zeros((1, 3, 3), "float32")  # logits (B, voxels, C), channels last: softmax ⅓
        >>> y_true = np.array([[0, 1, 0]])  # (B, voxels)
        >>> loss = DiceLoss(phi="I", eps=0.0)  # model.compile(optimizer="adam", loss=loss)
        >>> round(float(loss(y_true, y_pred)), 4)  # mean over classes 0, 1, 2 of 1 − (4/3)/3, 1 − (2/3)/2, 1 − 0/1
        0.7407
    """

    def _loss(self, y_true, y_pred, num_channels, checks):
        stats = self._sums(y_true, y_pred, num_channels, checks).stats
        return self._dice(drop_background(stats, self.config.include_background, stacklevel=6), num_channels)


@keras.saving.register_keras_serializable(package="phidice")
@config_signature(DiceConfig, CEConfig, skip=KERAS_SKIP)
class DiceCELoss(_PhiLoss):
    """λ_dice · Dice + λ_ce · cross-entropy (binary cross-entropy for ``activation="sigmoid"``), the Keras form
    of :class:`phidice.DiceCELoss`.

    ``ce_weight`` weighs classes in the cross-entropy (a weighted mean, as torch's), ``lambda_dice`` and
    ``lambda_ce`` weigh the two terms, ``label_smoothing`` as in torch; ``ignore_index`` applies to both.

    Args:
        phi, eps, …: as :class:`DiceLoss`.
        lambda_dice, lambda_ce, ce_weight, label_smoothing: as :class:`phidice.DiceCELoss`.

    Raises:
        ValueError / TypeError: ``activation=None``, ``reduction="none"``, or any bad option.

    Example:
        >>> import numpy as np
        >>> from phidice.keras import DiceCELoss
        >>> y_pred = np.zeros((1, 3, 3), "float32")  # logits (B, voxels, C), channels last: softmax ⅓
        >>> y_true = np.array([[0, 1, 0]])  # (B, voxels)
        >>> round(float(DiceCELoss(phi="I", eps=0.0)(y_true, y_pred)), 4)  # the Dice above + log 3
        1.8394
    """

    def __init__(self, phi="I", eps=DEFAULT_EPS, *, data_format: str | None = None, name: str | None = None, **options):
        ce_options = {k: options.pop(k) for k in CE_OPTIONS if k in options}
        super().__init__(phi, eps, data_format=data_format, name=name, **options)
        self.ce = CEConfig(**ce_options)
        check_compound(self.config, "DiceCELoss")

    def _loss(self, y_true, y_pred, num_channels, checks):
        stats, prepared, _, _ = self._sums(y_true, y_pred, num_channels, checks)
        stats = drop_background(stats, self.config.include_background, stacklevel=6)
        dice = self._dice(stats, num_channels)
        x = self._layout.to_last(y_pred)
        return self.ce.lambda_dice * dice + self.ce.lambda_ce * cross_entropy(x, prepared, self.config, self.ce)

    def get_config(self) -> dict:
        return {**super().get_config(), **self.ce.to_dict()}


@keras.saving.register_keras_serializable(package="phidice")
class DiceFocalLoss(_PhiLoss):
    """λ_dice · Dice + λ_focal · focal loss, the Keras form of :class:`phidice.DiceFocalLoss` (MONAI's focal
    conventions; see :class:`~phidice.core.config.FocalConfig`): ``gamma``, ``alpha``, ``focal_weight``,
    ``lambda_dice``, ``lambda_focal``, ``focal_activation``; ``ignore_index`` applies to both terms.
    """

    def __init__(
        self,
        phi="I",
        eps=DEFAULT_EPS,
        *,
        gamma=2.0,
        alpha=None,
        focal_weight=None,
        lambda_dice=1.0,
        lambda_focal=1.0,
        focal_activation=None,
        **options,
    ):
        super().__init__(phi, eps, **options)
        self.focal = FocalConfig(gamma, alpha, focal_weight, lambda_dice, lambda_focal, focal_activation)
        check_compound(self.config, "DiceFocalLoss")
        if self.focal.activation_for(self.config) not in ("softmax", "sigmoid"):
            raise ValueError(
                f"DiceFocalLoss: the focal term needs logits and activation 'softmax' or 'sigmoid' "
                f"(or focal_activation=); got {self.focal.activation_for(self.config)!r}"
            )

    def _loss(self, y_true, y_pred, num_channels, checks):
        layout = self._layout
        prepared = prepare_target(y_true, tuple(y_pred.shape), self.config, layout, checks)
        x = layout.to_last(y_pred)
        stats = drop_background(sum_stats(x, prepared, self.config), self.config.include_background, stacklevel=6)
        dice = self._dice(stats, num_channels)
        focal = focal_term(x, prepared, self.config, self.focal, layout.axis_name)
        return self.focal.lambda_dice * dice + self.focal.lambda_focal * focal

    def get_config(self) -> dict:
        return {**super().get_config(), **self.focal.to_dict()}


class _PartialDice(_PhiLoss):
    """The leaf and marginal Dice: per-sample ``annotated`` flags, from ``annotated=`` or superset labels."""

    _kind = "leaf"

    def __init__(
        self,
        phi="I",
        eps=DEFAULT_EPS,
        *,
        labels_superset_map: dict | None = None,
        data_format: str | None = None,
        name: str | None = None,
        **options,
    ):
        super().__init__(phi, eps, data_format=data_format, name=name, **options)
        if self._kind == "marginal":
            check_marginal(self.config.activation, type(self).__name__)
        self.labels_superset_map = (
            None if labels_superset_map is None else check_superset_map(labels_superset_map, None)
        )

    def __call__(self, y_true, y_pred, sample_weight=None, *, annotated=None):
        """``annotated``: (B, C) bool, the classes each sample annotates (None: every class, or those the superset
        labels of ``y_true`` leave annotated when the loss has a ``labels_superset_map``)."""
        if sample_weight is not None:
            return super().__call__(y_true, y_pred, sample_weight)
        with keras.name_scope(self.name):
            return self._compute(y_true, y_pred, annotated=annotated)

    def _loss(self, y_true, y_pred, num_channels, checks, annotated=None):
        stats, _, keep, _ = self._sums(y_true, y_pred, num_channels, checks, annotated)
        stats, keep = steps.scored(stats, keep, self.config, num_channels)
        # XLA (jax.jit) rewrites x·float(keep) as select(keep, x, 0), which drops the NaN of an entry the subsets
        # leave out; the PyTorch losses carry it (NaN in, NaN out): the scored predicted volumes carry it here
        return self._dice(stats, num_channels, keep) + 0.0 * ops.sum(stats.pred_sum)

    def _sums(self, y_true, y_pred, num_channels, checks, annotated=None) -> Sums:
        """The sums of every channel (merged probabilities for the marginal Dice with background), the
        prepared target, ``keep`` and ``annotated`` (B, C)."""
        config, layout = self.config, self._layout
        pred_shape = tuple(y_pred.shape)
        if self.labels_superset_map is not None:
            if annotated is not None:
                raise ValueError(
                    f"{type(self).__name__} was built with labels_superset_map, which reads the "
                    f"annotated classes from y_true's superset labels; pass annotated= or the map, "
                    f"not both"
                )
            y_true, annotated = split_supersets(
                y_true, self.labels_superset_map, pred_shape, config.ignore_index, layout, checks
            )
        if self._kind == "marginal":
            check_marginal(config.activation, f"the {self._kind} Dice", num_channels)
        annotated = (
            all_annotated(y_pred, layout)
            if annotated is None
            else check_annotated(annotated, pred_shape, layout, config.activation, checks)
        )
        prepared = prepare_target(y_true, pred_shape, config, layout, checks)
        x = layout.to_last(y_pred)
        stats, keep = steps.partial_stats(self._kind, x, prepared, annotated, config, sum_stats, KERAS)
        check_unannotated_labels(stats.target_sum, annotated, checks)
        return Sums(stats, prepared, keep, annotated)

    def get_config(self) -> dict:
        supersets = self.labels_superset_map
        return {
            **super().get_config(),
            "labels_superset_map": None if supersets is None else {str(k): v for k, v in supersets.items()},
        }

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if config.get("labels_superset_map") is not None:  # JSON keys are strings
            config["labels_superset_map"] = {int(k): v for k, v in config["labels_superset_map"].items()}
        return cls(**config)


@keras.saving.register_keras_serializable(package="phidice")
@config_signature(DiceConfig, skip=KERAS_SKIP)
class LeafDiceLoss(_PartialDice):
    """Leaf Dice (Fidon et al. 2021) over Φ, the Keras form of :class:`phidice.LeafDiceLoss`: the (image, class)
    entries of unannotated classes leave the subsets φ (and the background of a sample that misses a class).

    ``loss(y_true, y_pred, annotated=flags)`` with (B, C) bool flags, or — for ``model.fit`` — superset labels
    in ``y_true`` with ``labels_superset_map={s: [0, u, …]}`` (label s: "background or u, …").

    Args:
        phi, eps, …, data_format, name: as :class:`DiceLoss`.
        labels_superset_map: {superset label: [0, u, …]}, for annotated classes read from ``y_true``.

    Raises:
        ValueError / TypeError: a bad option or map (here); a bad ``annotated`` or label (in the call).

    Example:
        >>> import numpy as np
        >>> from phidice.keras import LeafDiceLoss
        >>> y_pred = np.zeros((1, 3, 3), "float32")  # logits (B, voxels, C), channels last: softmax ⅓
        >>> y_true = np.array([[0, 1, 0]])  # (B, voxels)
        >>> annotated = np.array([[True, True, False]])  # class 2 not annotated
        >>> round(float(LeafDiceLoss(phi="I", eps=0.0)(y_true, y_pred, annotated=annotated)), 4)  # class 1 only
        0.6667
    """


@keras.saving.register_keras_serializable(package="phidice")
@config_signature(DiceConfig, skip=KERAS_SKIP)
class MarginalDiceLoss(_PartialDice):
    """Marginal Dice (Shi et al. 2021) over Φ, the Keras form of :class:`phidice.MarginalDiceLoss`: the
    probabilities of unannotated classes join the background, then their entries leave the subsets φ.

    Needs softmax (or probabilities with ``activation=None``); ``annotated`` as for :class:`LeafDiceLoss`.

    Args:
        phi, eps, …, labels_superset_map, data_format, name: as :class:`LeafDiceLoss`.

    Raises:
        ValueError / TypeError: ``activation="sigmoid"``, a bad option or map; a bad ``annotated`` (in the call).

    Example:
        >>> import numpy as np
        >>> from phidice.keras import MarginalDiceLoss
        >>> y_pred = np.zeros((1, 3, 3), "float32")  # logits (B, voxels, C), channels last: softmax ⅓
        >>> y_true = np.array([[0, 1, 0]])  # (B, voxels)
        >>> annotated = np.array([[True, True, False]])
        >>> round(float(MarginalDiceLoss(phi="I", eps=0.0)(y_true, y_pred, annotated=annotated)), 4)  # p_2 → p_0
        0.5
    """

    _kind = "marginal"
