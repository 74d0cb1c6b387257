"""A ``prepare_batch`` for MONAI's engines that hands each batch's ``annotated`` rows to the loss."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.data import MetaTensor
from monai.engines import PrepareBatch

from phidice.core.checks import plain_tensor
from phidice.integrations.monai.losses import ANNOTATED_KEY

__all__ = ["PrepareBatchAnnotated"]


class PrepareBatchAnnotated(PrepareBatch):
    """``(image, label)`` for ``SupervisedTrainer``, with the batch's (B, C) ``annotated`` rows in the label's metadata.

    ``SupervisedTrainer`` calls ``loss_function(pred, label)``; :class:`AnnotatedLoss` reads the rows back
    from ``label.meta[annotated_key]``. The label stays a tensor (a MetaTensor), so the trainer's metrics
    and handlers see what they would see without it. The rows come from :class:`AnnotatedLabelsd`.

    Raises:
        KeyError: the batch lacks ``image_key``, ``label_key`` or ``annotated_key`` (the message lists its keys).
        ValueError: the rows are not (B, C) with B the label's batch size.
    """

    def __init__(
        self, annotated_key: Hashable = ANNOTATED_KEY, image_key: Hashable = "image", label_key: Hashable = "label"
    ) -> None:
        self.annotated_key = annotated_key
        self.image_key = image_key
        self.label_key = label_key

    def __call__(
        self, batchdata: Mapping, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ) -> tuple[torch.Tensor, MetaTensor]:
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"PrepareBatchAnnotated needs dictionary batches; got {type(batchdata).__name__}")
        for name in ("image_key", "label_key", "annotated_key"):
            key = getattr(self, name)
            if key not in batchdata:
                hint = " (the AnnotatedLabelsd transform writes it)" if name == "annotated_key" else ""
                raise KeyError(
                    f"PrepareBatchAnnotated: {name}={key!r} is not in the batch{hint}; its keys are {list(batchdata)}"
                )
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        label = batchdata[self.label_key].to(device=device, non_blocking=non_blocking, **kwargs)
        annotated = plain_tensor(torch.as_tensor(batchdata[self.annotated_key]))  # a MetaTensor if typed so
        if annotated.ndim != 2 or annotated.shape[0] != label.shape[0]:
            raise ValueError(
                f"PrepareBatchAnnotated: batch[{self.annotated_key!r}] must be (B, C) rows with B = "
                f"{label.shape[0]}; got shape {tuple(annotated.shape)}"
            )
        if not isinstance(label, MetaTensor):
            label = MetaTensor(label)
        label.meta[self.annotated_key] = annotated.to(device=label.device, non_blocking=non_blocking)
        return image, label
