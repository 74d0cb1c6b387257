"""``nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerPhiDice_I`` (see docs/nnunet.md)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_I

__all__ = ["nnUNetTrainerPhiDice_I"]
