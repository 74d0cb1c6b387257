"""What every loss module shares: its :class:`DiceConfig`, ε and class weights as registered buffers, and
the step from (B, C) sums to the loss (the global batch under DDP, then Eq. 3).

A module keeps ε (numerator, denominator, empty maps) and the class weights as float64 buffers, cast to
the sums' dtype per call (``.half()`` or ``.float()`` of a model leave them exact): they follow
``.to(device)``, appear in ``state_dict`` and load back, and its :attr:`config` follows what was loaded.
The functional forms use the config's numbers directly.
"""

from __future__ import annotations

import torch
from torch import nn

from phidice import distributed
from phidice.core.config import CEConfig, DiceConfig
from phidice.core.types import DiceStats
from phidice.core.xp import TORCH
from phidice.equations import Smoothing, config_smoothing, scored_loss

SMOOTHING = ("eps_nr", "eps_dr", "eps_empty", "class_weights")


def loss_from_sums(stats: DiceStats, config: DiceConfig, raw: Smoothing, *, num_channels: int, keep=None):
    """The loss of Eq. 3 from the (B, C') sums of the scored classes.

    Under ``sync_batch`` the (b, c) rows of every rank are gathered first (:func:`phidice.distributed.
    gather_batch`), so every Φ, weight and skip rule is that of one process on the global batch.
    """
    if config.sync_batch:
        stats, keep = distributed.gather_batch(stats, keep)
    return scored_loss(stats, config, raw, num_channels=num_channels, keep=keep, xp=TORCH)


class LossModule(nn.Module):
    """A loss with a :class:`DiceConfig` (and a :class:`CEConfig` for the compound losses) built at construction.

    ε, the class weights and ``ce_weight`` are buffers; ``config`` is updated when a state dict is loaded.
    """

    _buffer_names: tuple[str, ...] = SMOOTHING
    _monitor = None  # a GradientMonitor attached with ``monitor.attach()``: told the sums of every call

    def __init__(self, config: DiceConfig, ce: CEConfig | None = None):
        super().__init__()
        self.config = config
        self.ce = ce
        values = dict(zip(SMOOTHING, config_smoothing(config)))
        values["ce_weight"] = None if ce is None else ce.ce_weight
        for name in self._buffer_names:
            value = values[name]
            self.register_buffer(name, None if value is None else torch.tensor(value, dtype=torch.float64))

    @classmethod
    def from_config(cls, config: DiceConfig, ce: CEConfig | None = None, **ce_options) -> LossModule:
        """The loss for a built configuration (integrations pass the one config they validated)."""
        self = cls.__new__(cls)
        if "ce_weight" in cls._buffer_names:
            ce = CEConfig(**{**(ce.to_dict() if ce else {}), **ce_options})
        elif ce is not None or ce_options:
            raise TypeError(f"{cls.__name__} has no cross-entropy term; got CE options")
        LossModule.__init__(self, config, ce)
        self._check_config()
        return self

    def _check_config(self) -> None:
        """Checks of the options that only this loss has (a subclass's own rules)."""

    def monitor_for(self, monitor):
        """The monitor this call reports its sums to: ``monitor`` if given (it must watch this loss), else the
        attached one (:meth:`phidice.GradientMonitor.attach`), else None."""
        if monitor is None:
            return self._monitor
        if getattr(monitor, "loss", None) is not self:
            raise ValueError(
                f"monitor must be a phidice.GradientMonitor built on this loss "
                f"(GradientMonitor(loss)); got {type(monitor).__name__} watching another loss"
            )
        return monitor

    @property
    def phi(self):
        return self.config.phi

    @property
    def activation(self):
        return self.config.activation

    @property
    def smoothing(self) -> Smoothing:
        return Smoothing(self.eps_nr, self.eps_dr, self.eps_empty, self.class_weights)

    def _apply(self, fn, *args, **kwargs):
        """ε and the weights follow ``.to(device)`` but stay float64 whatever dtype the model is cast to."""
        before = {n: self._buffers.get(n) for n in self._buffer_names}
        super()._apply(fn, *args, **kwargs)
        for name, old in before.items():
            new = self._buffers.get(name)
            if old is not None and new is not None and new.dtype != torch.float64:
                self._buffers[name] = old.to(device=new.device)
        return self

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        for name in self._buffer_names:  # checkpoints saved before ε lived in buffers: keep the configured ε
            buffer = self._buffers.get(name)
            if buffer is not None and prefix + name not in state_dict:
                state_dict[prefix + name] = buffer
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        # here rather than as a load_state_dict post hook: registering a hook does not trace under torch.compile,
        # and a loss may be built inside a compiled function
        LossModule._follow_loaded_buffers(self, None)

    @staticmethod
    def _follow_loaded_buffers(module, incompatible_keys) -> None:
        def value(t):
            return None if t is None else (float(t) if t.ndim == 0 else tuple(t.tolist()))

        b = module._buffers
        module.config = module.config.replace(
            eps_nr=value(b["eps_nr"]),
            eps_dr=value(b["eps_dr"]),
            eps_empty=value(b["eps_empty"]),
            class_weights=value(b["class_weights"]),
        )
        if module.ce is not None and "ce_weight" in b:
            module.ce = CEConfig(**{**module.ce.to_dict(), "ce_weight": value(b["ce_weight"])})

    def extra_repr(self) -> str:
        """The options that differ from the defaults (``DiceLoss(phi='BI', eps=1.0)``)."""
        ce = "" if self.ce is None else ", " + ", ".join(f"{k}={v!r}" for k, v in self.ce.to_dict().items())
        return self.config.describe() + ce
