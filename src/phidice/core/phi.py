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

The subset sums are two steps, :meth:`Phi.sum_batch` then :meth:`Phi.sum_classes`, because Eq. 3 weighs
the classes of a φ (inner weights v_c, computed from the batch-summed target) between them. No torch
import: ``xp`` is the array namespace (:mod:`phidice.core.xp`); without it tensor methods are used.
"""

from __future__ import annotations

from enum import Enum

_ALIASES = {"IC": "CI", "BIC": "BCI", "CBI": "BCI", "IB": "BI"}


def _sum(x, axis: int, xp):
    return x.sum(axis, keepdim=True) if xp is None else xp.sum(x, axis)


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

    def sum_batch(self, x, xp=None):
        """Σ over the images b (axis 0, kept) when φ spans the batch; ``x`` unchanged otherwise."""
        return _sum(x, 0, xp) if self.sums_batch else x

    def sum_classes(self, x, xp=None):
        """Σ over the classes c (axis 1, kept) when φ spans the classes; ``x`` unchanged otherwise."""
        return _sum(x, 1, xp) if self.sums_classes else x

    def reduce(self, per_image_class, xp=None):
        """Sum a (B, C) tensor of per-image, per-class sums into per-φ sums (keepdim)."""
        return self.sum_classes(self.sum_batch(per_image_class, xp), xp)


def parse_phi(phi: str | Phi) -> Phi:
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
