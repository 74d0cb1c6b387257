"""``nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerPhiDice_Ieps`` (see docs/nnunet.md)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Ieps

__all__ = ["nnUNetTrainerPhiDice_Ieps"]
