"""phidice in Lightning (``pip install phidice[lightning]``): :class:`GradientMonitorCallback` logs the live
Eq. 4 statistics of a module's phidice loss through ``self.log`` (whatever loggers the Trainer has)."""

from __future__ import annotations

from phidice.core.deps import require

require("lightning", "lightning", "phidice.integrations.lightning")

from phidice.integrations.lightning.callback import GradientMonitorCallback

__all__ = ["GradientMonitorCallback"]
