"""phidice in MONAI pipelines (``pip install phidice[monai]``); see docs/monai.md.

The plain losses need nothing from here: ``phidice.DiceLoss`` / ``DiceCELoss`` take MONAI's float labels
(B, 1, *S) and MetaTensors, sit under ``monai.losses.DeepSupervisionLoss``, and a bundle names them by dotted
path (``"_target_": "phidice.DiceCELoss"``). The missing-label losses also need each sample's ``annotated``
classes, which MONAI's engines do not pass to a loss; three pieces carry them there:

* :class:`AnnotatedLabelsd` — a dictionary transform: a case's list of annotated labels → its (C,) row;
* :class:`PrepareBatchAnnotated` — a ``prepare_batch`` for ``SupervisedTrainer``: the batch's (B, C) rows
  ride on the label, in its MetaTensor metadata;
* :class:`AnnotatedLoss` — calls ``loss(input, target, annotated)`` with the rows it finds there.

Pooling partially labelled datasets (:mod:`.pooling`, docs/pooling.md): :func:`pool_data_list` writes one data
list from nnU-Net raw folders or Decathlon-style lists, labels united by name; :class:`RemapLabelsd` remaps each
item's labels on the fly; :func:`pooled_transforms` chains loading, remapping and the annotated rows.
:class:`GradientMonitorHandler` writes a :class:`phidice.GradientMonitor`'s values to ``engine.state.metrics``.
"""

from __future__ import annotations

from phidice.core.deps import require

require("monai", "monai", "phidice.integrations.monai")

from phidice.integrations.monai.engines import PrepareBatchAnnotated
from phidice.integrations.monai.losses import ANNOTATED_KEY, AnnotatedLoss
from phidice.integrations.monai.monitor import GradientMonitorHandler
from phidice.integrations.monai.pooling import RemapLabelsd, pool_data_list, pooled_transforms
from phidice.integrations.monai.transforms import AnnotatedLabelsd

__all__ = [
    "ANNOTATED_KEY",
    "AnnotatedLabelsd",
    "AnnotatedLoss",
    "GradientMonitorHandler",
    "PrepareBatchAnnotated",
    "RemapLabelsd",
    "pool_data_list",
    "pooled_transforms",
]
