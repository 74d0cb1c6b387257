"""Rules on the options and channel counts, shared by the PyTorch and the Keras losses (no array library)."""

from __future__ import annotations

from phidice.core.config import DiceConfig


def label_upper(num_channels: int, activation) -> int:
    """Labels lie in [0, upper): C classes, or {0, 1} for a single sigmoid channel."""
    return 2 if (activation == "sigmoid" and num_channels == 1) else num_channels


def check_compound(config: DiceConfig, what: str) -> None:
    """The rules a Dice + cross-entropy loss adds to its Dice options (checked at construction)."""
    if config.activation is None:
        raise ValueError(f"{what} needs logits: activation must be 'softmax' or 'sigmoid'; got None")
    if config.reduction == "none":
        raise ValueError(f"{what} supports reduction 'mean' or 'sum', not 'none'")


def has_background(num_channels: int, activation) -> bool:
    """Channel 0 is a background that absorbs unannotated classes for softmax/probabilities with C > 1.

    Under ``activation="sigmoid"`` every channel is its own (possibly overlapping) class.
    """
    return num_channels > 1 and activation != "sigmoid"


def check_marginal(activation, what: str, num_channels: int | None = None) -> None:
    """The marginal losses merge mutually exclusive classes into a background: softmax (or probabilities), C ≥ 2."""
    if activation == "sigmoid":
        raise ValueError(
            f"{what} sums the probabilities of mutually exclusive classes into the background and "
            f"needs activation='softmax' (or None with probabilities); got 'sigmoid' — "
            f"use the leaf loss for independent sigmoid channels"
        )
    if num_channels is not None and num_channels < 2:
        raise ValueError(f"{what} needs a background channel and at least one class (C ≥ 2); got C = {num_channels}")
