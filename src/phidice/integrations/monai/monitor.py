"""An ignite handler for MONAI's engines that watches a phidice loss with a :class:`phidice.GradientMonitor`."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.data import MetaTensor
from monai.utils import CommonKeys

from phidice.core.checks import plain_tensor
from phidice.diagnostics.monitor import GradientMonitor, find_loss, flat_values
from phidice.integrations.monai.losses import ANNOTATED_KEY

__all__ = ["GradientMonitorHandler"]


def _batch_of(output, key):
    """``engine.state.output[key]`` as one (B, …) tensor (a decollated output is a list of per-case dicts)."""
    if isinstance(output, (list, tuple)):
        return torch.stack([plain_tensor(o[key]) for o in output])
    return output[key]


class GradientMonitorHandler:
    """Live Eq. 4 statistics of the engine's phidice loss, written to ``engine.state.metrics`` at every epoch's
    end, where MONAI's ``StatsHandler`` and ``TensorBoardStatsHandler`` log them (list this handler before
    them). On a ``SupervisedTrainer`` the monitor is attached to ``loss_function`` for the epoch (the loss's
    own sums, no second pass); on an evaluator (no loss call) each iteration's prediction — the network's
    logits: keep ``postprocessing`` out of it — goes through :meth:`phidice.GradientMonitor.update`.

    Args:
        loss: the phidice loss to watch; default the trainer's ``loss_function`` (``AnnotatedLoss`` and
            ``DeepSupervisionLoss`` are looked through). Needed for an evaluator.
        prefix: prefix of the metric names (``{prefix}{value}`` and ``{prefix}{value}/class{c}``).
        per_class: write the per-class values too.
        spacing: voxel size in mm: the predicted volume in ml too.
        advice: log the monitor's advice once per epoch.
        annotated_key: where a missing-label loss's rows ride on an evaluator's label (``PrepareBatchAnnotated``).

    Raises:
        TypeError: when the engine starts, if there is no phidice Dice-family loss to watch.
    """

    def __init__(
        self,
        loss=None,
        *,
        prefix: str = "phidice_",
        per_class: bool = True,
        spacing=None,
        advice: bool = True,
        annotated_key: str = ANNOTATED_KEY,
    ):
        self.loss = loss
        self.prefix = prefix
        self.per_class = per_class
        self.spacing = spacing
        self.advice = advice
        self.annotated_key = annotated_key
        self.monitor: GradientMonitor | None = None
        self.trains = False

    def _active(self) -> GradientMonitor:
        if self.monitor is None:
            raise RuntimeError(
                f"{type(self).__name__}: no monitor yet; the engine's STARTED event builds it from the loss"
            )
        return self.monitor

    def attach(self, engine) -> None:
        """Register on ``engine``; the loss is found when the engine starts (MONAI attaches ``train_handlers``
        before it sets ``loss_function``)."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def started(self, engine) -> None:
        if self.monitor is not None:
            return
        own = getattr(engine, "loss_function", None)
        loss = self.loss if self.loss is not None else own
        if loss is None:
            raise TypeError("GradientMonitorHandler: the engine has no loss_function (an evaluator); pass loss=")
        self.monitor = GradientMonitor(find_loss(loss), spacing=self.spacing, log=self.advice)
        self.trains = own is not None and find_loss(own) is self.monitor.loss

    def epoch_started(self, engine) -> None:
        self._active().reset()
        if self.trains:
            self._active().attach()

    def iteration_completed(self, engine) -> None:
        if self.trains:
            return
        output = engine.state.output
        pred, label = _batch_of(output, CommonKeys.PRED), _batch_of(output, CommonKeys.LABEL)
        annotated = None
        if self._active().missing:
            meta = label.meta if isinstance(label, MetaTensor) else {}
            annotated = meta.get(self.annotated_key)
        self._active().update(plain_tensor(pred), plain_tensor(label), annotated)

    def epoch_completed(self, engine) -> None:
        self._active().detach()
        if self._active().updates == 0:
            return
        result = self._active().epoch_end(epoch=engine.state.epoch)
        engine.state.metrics.update(flat_values(result, self.prefix, self.per_class))
