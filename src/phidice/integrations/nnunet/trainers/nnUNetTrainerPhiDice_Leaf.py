"""``nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerPhiDice_Leaf`` (see docs/nnunet.md)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Leaf

__all__ = ["nnUNetTrainerPhiDice_Leaf"]
