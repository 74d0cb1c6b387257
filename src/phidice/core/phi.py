"""The reduction subsets Φ of Eq. 3.

Every Φ here reduces completely over the image index i; they differ in whether a subset φ also spans
the batch (B) and/or the classes (C):

====  ===========================  ======================  ====================
Φ     one subset φ per              shape of per-φ tensors  paper
====  ===========================  ======================  ====================
I     image b, class c             (B, C)                  image-wise  DL_I
CI    image b (classes summed)     (B, 1)                  class-wise  DL_CI
BI    class c (batch summed)       (1, C)                  batch-wise  DL_BI
BCI   everything                   (1, 1)                  all-wise    DL_BCI
====  ===========================  ======================  ====================
"""

from __future__ import annotations

from enum import Enum

import torch

_ALIASES = {"IC": "CI", "BIC": "BCI", "CBI": "BCI", "IB": "BI"}


class Phi(str, Enum):
    I = "I"  # noqa: E741 - the paper's name
    CI = "CI"
    BI = "BI"
    BCI = "BCI"

    @property
    def sums_batch(self) -> bool:
        """Whether one subset φ spans the whole batch (B ∈ Φ's name)."""
        return "B" in self.value

    @property
    def sums_classes(self) -> bool:
        """Whether one subset φ spans all classes (C ∈ Φ's name)."""
        return "C" in self.value

    def reduce(self, per_image_class: torch.Tensor) -> torch.Tensor:
        """Sum a (B, C) tensor of per-image, per-class sums into per-φ sums (keepdim)."""
        out = per_image_class
        if self.sums_batch:
            out = out.sum(0, keepdim=True)
        if self.sums_classes:
            out = out.sum(1, keepdim=True)
        return out


def parse_phi(phi: "str | Phi") -> Phi:
    """Return the :class:`Phi` for ``"I"``, ``"CI"``, ``"BI"`` or ``"BCI"`` (any case)."""
    if isinstance(phi, Phi):
        return phi
    if not isinstance(phi, str):
        raise TypeError(f"phi must be a string, one of 'I', 'CI', 'BI', 'BCI'; got {type(phi).__name__}")
    key = phi.strip().upper()
    try:
        return Phi(key)
    except ValueError:
        hint = ""
        if key in _ALIASES:
            hint = f" ({phi!r} names the same subsets as {_ALIASES[key]!r}; use that spelling)"
        raise ValueError(
            f"unknown phi {phi!r}: expected one of 'I' (image-wise), 'CI' (class-wise), "
            f"'BI' (batch-wise), 'BCI' (all-wise){hint}"
        ) from None
