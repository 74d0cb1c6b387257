"""What Φ and ε do to empty maps while a Keras model trains: :class:`GradientMonitorCallback`, the Keras form of
:class:`phidice.GradientMonitor`, on every Keras back end.

``model.fit`` hands callbacks no predictions, so the statistics travel through a Keras metric: the callback's
:attr:`~GradientMonitorCallback.metric` (given to ``model.compile(metrics=[...])``) takes each batch's
``(y_true, y_pred)``, computes the loss's own per-(b, c) sums (the loss's code, no gradient) and adds the
monitor's (K, C' + 1) rows (:func:`phidice.diagnostics.monitor_math.monitor_rows` on ``keras.ops``) to its
state — inside the compiled step, under ``jax.jit`` and ``tf.function`` alike. At the end of each epoch the
callback reads the state and turns it into the PyTorch monitor's values with the same code
(:func:`~phidice.diagnostics.monitor_math.results_of`). Nothing here imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops
from phidice.diagnostics.monitor_math import (
    ROWS,
    advice_lines,
    check_config,
    check_spacing,
    flat_values,
    log_advice,
    monitor_rows,
    results_of,
)
from phidice.diagnostics.monitor_plot import write_history
from phidice.equations import align_smoothing, config_smoothing
from phidice.keras.losses import DiceCELoss, DiceLoss, LeafDiceLoss, MarginalDiceLoss
from phidice.keras.xp import KERAS

__all__ = ["GradientMonitorCallback", "GradientMonitorMetric", "MONITORED"]

MONITORED = (DiceLoss, DiceCELoss, LeafDiceLoss, MarginalDiceLoss)
_GRAD, _GRAD_EMPTY = ROWS.index("grad"), ROWS.index("grad_empty")


def check_loss(loss) -> None:
    if not isinstance(loss, MONITORED):
        raise TypeError(
            f"loss must be a phidice.keras Dice-family loss (DiceLoss, DiceCELoss, LeafDiceLoss, MarginalDiceLoss); "
            f"got {type(loss).__module__}.{type(loss).__name__}: the monitor reads the per-(b, c) sums that only "
            f"these losses compute"
        )
    check_config(loss.config)


def _counts(prepared, x, like):
    """N, the counted voxels of each (b, c) entry of channels-last ``x``: Σ m over the voxel mask (B, 1), or the
    spatial size; in the dtype of the sums ``like``."""
    if prepared.mask is None:
        spatial = tuple(x.shape[1:-1])
        if all(d is not None for d in spatial):
            return float(math.prod(spatial))
        return ops.cast(ops.prod(ops.shape(x)[1:-1]), like.dtype)
    m = ops.cast(prepared.mask, like.dtype)
    return ops.reshape(ops.sum(m, axis=tuple(range(1, len(m.shape) - 1))), (-1, 1))


class GradientMonitorMetric(keras.metrics.Metric):
    """The monitor's accumulated rows as a Keras metric; its ``result()`` is the overall
    ``empty_gradient_share`` so far (the progress bar's number). Made by :class:`GradientMonitorCallback`."""

    def __init__(self, loss, name: str = "phidice_monitor"):
        super().__init__(name=name)
        check_loss(loss)
        self.loss = loss
        self.channels: int | None = None
        self.state: Any = None

    def _build(self, channels: int, scored: int) -> None:
        self.channels = channels
        self.state = self.add_variable(shape=(len(ROWS), scored + 1), initializer="zeros", name="rows")

    def update_state(self, y_true, y_pred, sample_weight=None):
        loss, config = self.loss, self.loss.config
        (stats, prepared, keep, annotated), C = loss.monitor_sums(y_true, y_pred)
        sl = slice(1, None) if (not config.include_background and C > 1) else slice(None)
        if self.state is None:
            self._build(C, len(range(C)[sl]))
        elif C != self.channels:
            raise ValueError(
                f"y_pred has {C} channels (shape {tuple(y_pred.shape)}) but this monitor's earlier updates had "
                f"{self.channels}: one monitor follows one loss on one kind of input"
            )
        stats = stats.select_classes(sl)
        counts = _counts(prepared, loss._layout.to_last(y_pred), stats.intersection)
        smoothing = align_smoothing(
            config_smoothing(config), config, C, stats.intersection, xp=KERAS, axis=loss._layout.axis_name
        )
        keep, annotated = (None if f is None else f[:, sl] for f in (keep, annotated))
        rows = monitor_rows(stats, counts, keep, annotated, config, smoothing, KERAS)
        self.state.assign_add(ops.stop_gradient(ops.cast(rows, self.state.dtype)))

    def result(self):
        if self.state is None:
            return ops.convert_to_tensor(float("nan"))
        grad, empty = self.state[_GRAD, -1], self.state[_GRAD_EMPTY, -1]
        return ops.where(grad > 0, empty / ops.where(grad > 0, grad, 1.0), float("nan"))

    def reset_state(self):
        if self.state is not None:
            self.state.assign(ops.zeros(self.state.shape, dtype=self.state.dtype))

    def table(self) -> list[list[float]] | None:
        """The accumulated rows as lists of floats (None before the first update)."""
        return None if self.state is None else ops.convert_to_numpy(self.state).astype(float).tolist()


def _flat_metrics(metrics) -> list:
    """The metrics and, recursively, those they hold (Keras's compiled metrics)."""
    out = []
    for m in metrics:
        out.extend([m, *_flat_metrics(getattr(m, "metrics", None) or [])])
    return out


class GradientMonitorCallback(keras.callbacks.Callback):
    """Live Eq. 4 statistics of a phidice Keras loss during ``model.fit``, the Keras form of
    :class:`phidice.GradientMonitor`: per epoch, the values overall and per class (``phidice/name`` and
    ``phidice/name/class{c}``) go into the epoch's ``logs`` — so into ``model.fit(...).history`` and every
    later callback (CSVLogger, TensorBoard) — with ``val_`` ones for the validation data; :attr:`history`
    keeps the ``compute()``-style results, :meth:`advise` reads them.

    ``model.compile(loss=loss, metrics=[monitor.metric])`` and ``model.fit(..., callbacks=[monitor])``: the
    metric collects the batches' rows inside the compiled step.

    Args:
        loss: the model's phidice.keras loss (``DiceLoss``, ``DiceCELoss``, ``LeafDiceLoss``, ``MarginalDiceLoss``)
            with ``reduction`` "mean" or "sum" and ``squared=False``.
        spacing: voxel size in mm (one per spatial axis): the ``_ml`` volumes are reported too.
        prefix: the prefix of the names in ``logs``.
        per_class: put the per-class values into ``logs`` too.
        advice: log the advice once per epoch (``logging``, and a ``warnings`` warning when a class is flagged).
        history_file: rewritten (atomically) at each epoch end with :attr:`history` as JSON lines, the input of
            ``phidice monitor plot``.

    Raises:
        TypeError: ``loss`` is not a phidice.keras Dice-family loss.
        ValueError: ``reduction="none"``, ``squared=True``, a bad ``spacing``; at the start of ``fit``, a model
            compiled without :attr:`metric`.
    """

    def __init__(
        self,
        loss,
        *,
        spacing=None,
        prefix: str = "phidice/",
        per_class: bool = True,
        advice: bool = True,
        history_file=None,
    ):
        super().__init__()
        self.metric = GradientMonitorMetric(loss)
        self.loss = loss
        self.voxel_ml = check_spacing(spacing)
        self.prefix = prefix
        self.per_class = bool(per_class)
        self.advice = bool(advice)
        self.history_file = history_file
        self.missing = isinstance(loss, (LeafDiceLoss, MarginalDiceLoss))
        self.history: list[dict] = []
        self.val_history: list[dict] = []
        self._train: list[list[float]] | None = None
        self._val: list[list[float]] | None = None
        self._in_epoch = False

    def _check_compiled(self) -> None:
        if not any(m is self.metric for m in _flat_metrics(getattr(self.model, "metrics", []))):
            raise ValueError(
                "GradientMonitorCallback: the model is not compiled with the monitor's metric; use "
                "model.compile(loss=loss, metrics=[monitor.metric]) with this callback's loss"
            )

    def on_train_begin(self, logs=None):
        # JAX and torch build the compiled metrics before fit's first callback, TensorFlow in its first step:
        # an unbuilt model.metrics lists none of them yet, so the check waits for the first batch there.
        self._unchecked = not all(getattr(m, "built", True) for m in getattr(self.model, "metrics", []))
        if not self._unchecked:
            self._check_compiled()

    def on_train_batch_end(self, batch, logs=None):
        if getattr(self, "_unchecked", False):
            self._unchecked = False
            self._check_compiled()

    def on_epoch_begin(self, epoch, logs=None):
        self._train = self._val = None
        self._in_epoch = True

    def on_test_begin(self, logs=None):  # validation inside fit: the training rows are read before Keras resets
        if self._in_epoch and self._train is None:
            self._train = self.metric.table()

    def on_test_end(self, logs=None):
        if self._in_epoch:
            self._val = self.metric.table()

    def _result(self, table, epoch: int) -> dict:
        first = 1 if (not self.loss.config.include_background and (self.metric.channels or 0) > 1) else 0
        result = results_of(table, first, self.voxel_ml, self.missing)
        result["epoch"] = int(epoch)
        return result

    def on_epoch_end(self, epoch, logs=None):
        self._in_epoch = False
        table = self._train if self._train is not None else self.metric.table()
        if table is None:
            return
        result = self._result(table, epoch)
        self.history.append(result)
        if logs is not None:
            logs.update(flat_values(result, self.prefix, self.per_class))
        if self._val is not None:
            val = self._result(self._val, epoch)
            self.val_history.append(val)
            if logs is not None:
                logs.update(flat_values(val, "val_" + self.prefix, self.per_class))
        if self.history_file is not None:
            write_history(self.history_file, self.history)
        if self.advice:
            log_advice(self.advise(result), epoch)

    def advise(self, result: dict | None = None) -> list[str]:
        """What the numbers say, in the paper's terms, one line per class (see
        :func:`phidice.diagnostics.monitor_math.advice_lines`); default: the last epoch's training values."""
        if result is None:
            if not self.history:
                raise RuntimeError("GradientMonitorCallback.advise before the end of an epoch: nothing to read yet")
            result = self.history[-1]
        earlier = [h for h in self.history if h is not result and h["epoch"] < result["epoch"]]
        return advice_lines(result, earlier[-1] if earlier else None, self.loss.config, self.voxel_ml is not None)
