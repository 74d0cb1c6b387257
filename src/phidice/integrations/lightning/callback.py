"""A Lightning ``Callback`` that watches the LightningModule's phidice loss with a :class:`phidice.GradientMonitor`."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from phidice.diagnostics.monitor import GradientMonitor, find_loss, flat_values

__all__ = ["GradientMonitorCallback"]


class GradientMonitorCallback(Callback):
    """Attach a :class:`phidice.GradientMonitor` to the module's loss during training batches; at the end of
    every training epoch log its values (overall and ``name/class{c}``) with ``pl_module.log_dict`` — to the
    Trainer's loggers (TensorBoard, CSV, W&B, …) — log its advice once, and keep the per-epoch history in
    the checkpoint. Validation batches are not counted.

    Args:
        loss: the phidice loss to watch; default ``getattr(pl_module, attribute)`` (wrappers with a ``.loss``
            are looked through).
        attribute: the module attribute holding the loss.
        prefix: the prefix of the logged names.
        per_class: log the per-class values too.
        spacing: as :class:`phidice.GradientMonitor`.
        advice: log the monitor's advice once per epoch (its ``log``); False keeps it silent.

    Raises:
        TypeError: at setup, when the loss is not a phidice Dice-family loss.
    """

    def __init__(
        self,
        loss=None,
        *,
        attribute: str = "loss",
        prefix: str = "phidice/",
        per_class: bool = True,
        spacing=None,
        advice: bool = True,
    ):
        self.loss = loss
        self.attribute = attribute
        self.prefix = prefix
        self.per_class = per_class
        self.spacing = spacing
        self.advice = advice  # (not `log`: Lightning binds pl_module.log onto callbacks)
        self.monitor: GradientMonitor | None = None
        self._history: list = []

    def _active(self) -> GradientMonitor:
        if self.monitor is None:
            raise RuntimeError(f"{type(self).__name__}: no monitor yet; the trainer's setup builds it from the loss")
        return self.monitor

    def setup(self, trainer, pl_module, stage=None) -> None:
        if self.monitor is not None:
            return
        loss = self.loss if self.loss is not None else getattr(pl_module, self.attribute, None)
        if loss is None:
            raise TypeError(
                f"GradientMonitorCallback: the LightningModule has no attribute {self.attribute!r}; "
                f"pass loss= or attribute="
            )
        self.monitor = GradientMonitor(find_loss(loss), spacing=self.spacing, log=self.advice)
        self.monitor.history = self._history

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._active().reset()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._active().attach()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._active().detach()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._active().updates == 0 and trainer.world_size == 1:
            return
        result = self._active().epoch_end(epoch=trainer.current_epoch)
        pl_module.log_dict(flat_values(result, self.prefix, self.per_class), on_epoch=True, on_step=False)

    def teardown(self, trainer, pl_module, stage=None) -> None:
        if self.monitor is not None:
            self.monitor.detach()

    def state_dict(self) -> dict:
        return {"history": list(self._history if self.monitor is None else self.monitor.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._history = [dict(h) for h in state_dict.get("history", [])]
        if self.monitor is not None:
            self.monitor.history = self._history
