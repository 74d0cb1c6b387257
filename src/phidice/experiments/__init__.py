"""The paper's experiments (Sect. 3–4): Φ = I, BI, I_ε (and leaf / marginal Dice) with full or partial labels.

:func:`reproduce` runs a grid and writes report.md, results.json, roc.png and examples.png; the data are
semi-synthetic lesions on MNI152 slices shipped with nilearn (:mod:`~phidice.experiments.data`) or the
user's own folders (:mod:`~phidice.experiments.layouts`). Only phidice's public API is used for losses,
ε and metrics.
"""

from phidice.core.deps import require

for _module in ("scipy", "matplotlib"):  # imported by the modules below; nilearn when the data are made
    require(_module, "experiments", "phidice.experiments")

from phidice.experiments.data import SegDataset, make_dataset
from phidice.experiments.run import PRESETS, reproduce

__all__ = ["PRESETS", "SegDataset", "make_dataset", "reproduce"]
