"""A missing-label loss where MONAI calls ``loss(input, target)``: the ``annotated`` rows ride on the target."""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from torch import nn

__all__ = ["ANNOTATED_KEY", "AnnotatedLoss"]

ANNOTATED_KEY = "annotated"


class AnnotatedLoss(nn.Module):
    """``loss(input, target, annotated)`` with ``annotated`` = ``target.meta[annotated_key]``, the (B, C) rows.

    For ``LeafDiceLoss``, ``MarginalDiceLoss`` and their Dice + CE forms where MONAI passes only
    ``(input, target)``: ``SupervisedTrainer`` (with :class:`PrepareBatchAnnotated`, which puts the rows
    there) and ``monai.losses.DeepSupervisionLoss`` (its resized targets keep their metadata).

    Raises:
        TypeError: ``loss`` is not callable.
        ValueError: a target that is not a MetaTensor, or whose metadata has no ``annotated_key`` —
            the error says where the rows come from.
    """

    def __init__(self, loss, annotated_key: str = ANNOTATED_KEY) -> None:
        super().__init__()
        if not callable(loss):
            raise TypeError(
                f"loss must be a missing-label loss (a callable (input, target, annotated)); got {type(loss).__name__}"
            )
        self.loss = loss
        self.annotated_key = annotated_key

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        meta = target.meta if isinstance(target, MetaTensor) else {}
        if self.annotated_key not in meta:
            what = "a MetaTensor without it" if isinstance(target, MetaTensor) else f"a {type(target).__name__}"
            raise ValueError(
                f"AnnotatedLoss reads each sample's annotated classes from target.meta[{self.annotated_key!r}], but "
                f"the target is {what}: build the trainer with prepare_batch=PrepareBatchAnnotated() and give each "
                f"case its row with the AnnotatedLabelsd transform (SupervisedTrainer(compile=True) drops the metadata)"
            )
        return self.loss(input, target, meta[self.annotated_key])

    def extra_repr(self) -> str:
        return f"annotated_key={self.annotated_key!r}"
