"""``nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerPhiDice`` (see docs/nnunet.md)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice

__all__ = ["nnUNetTrainerPhiDice"]
