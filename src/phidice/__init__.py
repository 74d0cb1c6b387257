"""phidice — the Dice loss with explicit reduction subsets Φ and smoothing ε.

Every loss, metric and diagnostic here is a thin layer over the same per-subset sums of Eq. 3
(Tilborghs, Bertels et al., MICCAI 2022): the intersection Σ y·ỹ, the prediction sum Σ ỹ and the
target sum Σ y, computed per image b and class c and then summed over the subsets φ ∈ Φ.

Public names are imported lazily so that ``import phidice`` stays cheap (no numba, nibabel or
matplotlib until they are used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # core (issue: core loss)
    "DiceLoss": "phidice.core.losses",
    "DiceCELoss": "phidice.core.losses",
    "dice_loss": "phidice.core.dice",
    "dice_ce_loss": "phidice.core.losses",
    "dice_gradient": "phidice.core.gradient",
    "DiceGradient": "phidice.core.gradient",
    "DiceStats": "phidice.core.stats",
    "compute_stats": "phidice.core.stats",
    "loss_from_stats": "phidice.core.dice",
    "Phi": "phidice.core.phi",
    "parse_phi": "phidice.core.phi",
    # missing labels
    "LeafDiceLoss": "phidice.missing.losses",
    "MarginalDiceLoss": "phidice.missing.losses",
    "MarginalCrossEntropyLoss": "phidice.missing.losses",
    "MarginalDiceCELoss": "phidice.missing.losses",
    "LeafDiceCELoss": "phidice.missing.losses",
    "annotated_from_label_sets": "phidice.missing.label_sets",
    # ε heuristic and gradient diagnostics
    "estimate_epsilon": "phidice.epsilon",
    "explain": "phidice.diagnostics.explain",
    # metrics
    "dice_score": "phidice.metrics.dice",
    "DiceAccumulator": "phidice.metrics.accumulator",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


_SUBPACKAGES = ("core", "ops", "missing", "diagnostics", "metrics", "distributed", "experiments", "epsilon", "cli")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"phidice.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'phidice' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from phidice.core.dice import dice_loss, loss_from_stats
    from phidice.core.gradient import DiceGradient, dice_gradient
    from phidice.core.losses import DiceCELoss, DiceLoss, dice_ce_loss
    from phidice.core.phi import Phi, parse_phi
    from phidice.core.stats import DiceStats, compute_stats
