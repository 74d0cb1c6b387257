"""Keras 3 losses with explicit reduction subsets Φ and smoothing ε, on TensorFlow, JAX or PyTorch.

:class:`DiceLoss`, :class:`DiceCELoss`, :class:`DiceFocalLoss`, :class:`LeafDiceLoss` and :class:`MarginalDiceLoss`
take the arguments of the PyTorch losses of the same names and give the same values: only the per-(image, class)
sums of Eq. 3 are computed here, with ``keras.ops``; Φ, ε and the weights go through :mod:`phidice.equations`, as in
PyTorch. Channels-last by default (``data_format`` changes it). The back end is Keras's (``KERAS_BACKEND``); this
package never imports torch itself. Install with ``pip install "phidice[keras]"`` plus a back end; see
docs/keras.md.
"""

from phidice.core.deps import require

keras = require("keras", "keras", "phidice.keras")
if int(keras.__version__.split(".")[0]) < 3:
    raise ImportError(
        f"phidice.keras needs Keras 3 (keras>=3); got keras {keras.__version__}: pip install 'phidice[keras]'"
    )

from phidice.keras.losses import (
    DiceCELoss,
    DiceFocalLoss,
    DiceLoss,
    LeafDiceLoss,
    MarginalDiceLoss,
    loss_from_stats,
    loss_from_sums,
)
from phidice.keras.monitor import GradientMonitorCallback, GradientMonitorMetric
from phidice.keras.xp import KERAS, KerasOps

__all__ = [
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "GradientMonitorCallback",
    "GradientMonitorMetric",
    "KERAS",
    "KerasOps",
    "LeafDiceLoss",
    "MarginalDiceLoss",
    "loss_from_stats",
    "loss_from_sums",
]
