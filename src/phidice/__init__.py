"""phidice — the Dice loss with explicit reduction subsets Φ and smoothing ε.

Every loss, metric and diagnostic here is a thin layer over the same per-subset sums of Eq. 3
(Tilborghs, Bertels et al., MICCAI 2022): the intersection Σ y·ỹ, the prediction sum Σ ỹ and the
target sum Σ y, computed per image b and class c and then summed over the subsets φ ∈ Φ.

Layers, each importing only those below it (tests/test_layers.py checks it)::

    core/         Φ, DiceConfig, the types between layers, checks          (the leaf)
    io, progress  files in and out, progress bars
    ops/          fused kernels: numba (CPU), Triton (CUDA), chunked torch fallback
    sums          the per-(b, c) sums from logits and targets
    equations     Eq. 3 and Eq. 4 as named steps
    distributed   the global batch under DDP
    losses/, metrics/, epsilon, then missing/
    diagnostics/, then experiments/, integrations/, keras/, then cli/

Public names are imported lazily so that ``import phidice`` stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING

try:  # the version of the installed distribution: one number, in pyproject.toml
    __version__ = importlib.metadata.version("phidice")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DiceConfig": "phidice.core.config",
    "CEConfig": "phidice.core.config",
    "DEFAULT_EPS": "phidice.core.config",
    "Overlap": "phidice.core.config",
    "tversky": "phidice.core.config",
    "DICE": "phidice.core.config",
    "JACCARD": "phidice.core.config",
    "Phi": "phidice.core.phi",
    "parse_phi": "phidice.core.phi",
    "DiceStats": "phidice.core.types",
    "compute_stats": "phidice.sums",
    "loss_from_stats": "phidice.losses.dice",
    "dice_loss": "phidice.losses.dice",
    "DiceLoss": "phidice.losses.dice",
    "dice_ce_loss": "phidice.losses.compound",
    "DiceCELoss": "phidice.losses.compound",
    "FocalConfig": "phidice.core.config",
    "dice_focal_loss": "phidice.losses.focal",
    "DiceFocalLoss": "phidice.losses.focal",
    "dice_gradient": "phidice.losses.gradient",
    "DiceGradient": "phidice.losses.gradient",
    # the other indices of the same sums
    "TverskyLoss": "phidice.losses.overlaps",
    "JaccardLoss": "phidice.losses.overlaps",
    "TverskyCELoss": "phidice.losses.overlaps",
    "JaccardCELoss": "phidice.losses.overlaps",
    "tversky_loss": "phidice.losses.overlaps",
    "jaccard_loss": "phidice.losses.overlaps",
    "tversky_ce_loss": "phidice.losses.overlaps",
    "jaccard_ce_loss": "phidice.losses.overlaps",
    "tversky_gradient": "phidice.losses.overlaps",
    "jaccard_gradient": "phidice.losses.overlaps",
    # missing labels
    "LeafDiceLoss": "phidice.missing.losses",
    "MarginalDiceLoss": "phidice.missing.losses",
    "MarginalCrossEntropyLoss": "phidice.missing.losses",
    "MarginalDiceCELoss": "phidice.missing.losses",
    "LeafDiceCELoss": "phidice.missing.losses",
    "LeafDiceFocalLoss": "phidice.missing.losses",
    "DeepSupervisionLoss": "phidice.missing.deep_supervision",
    "MarginalDiceFocalLoss": "phidice.missing.losses",
    "annotated_from_label_sets": "phidice.missing.label_sets",
    # ε heuristic and gradient diagnostics
    "estimate_epsilon": "phidice.epsilon",
    "explain": "phidice.diagnostics.explain",
    "GradientMonitor": "phidice.diagnostics.monitor",
    # metrics
    "dice_score": "phidice.metrics.dice",
    "DiceAccumulator": "phidice.metrics.accumulator",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

_SUBPACKAGES = (
    "core",
    "ops",
    "sums",
    "equations",
    "losses",
    "missing",
    "diagnostics",
    "metrics",
    "distributed",
    "experiments",
    "epsilon",
    "io",
    "cli",
)


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
    from phidice.core.config import DEFAULT_EPS, DICE, JACCARD, CEConfig, DiceConfig, FocalConfig, Overlap, tversky
    from phidice.core.phi import Phi, parse_phi
    from phidice.core.types import DiceStats
    from phidice.losses.compound import DiceCELoss, dice_ce_loss
    from phidice.losses.dice import DiceLoss, dice_loss, loss_from_stats
    from phidice.losses.focal import DiceFocalLoss, dice_focal_loss
    from phidice.losses.gradient import DiceGradient, dice_gradient
    from phidice.losses.overlaps import (
        JaccardCELoss,
        JaccardLoss,
        TverskyCELoss,
        TverskyLoss,
        jaccard_ce_loss,
        jaccard_gradient,
        jaccard_loss,
        tversky_ce_loss,
        tversky_gradient,
        tversky_loss,
    )
    from phidice.sums import compute_stats
