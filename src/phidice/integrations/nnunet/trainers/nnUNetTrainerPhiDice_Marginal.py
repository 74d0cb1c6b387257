"""``nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerPhiDice_Marginal`` (see docs/nnunet.md)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Marginal

__all__ = ["nnUNetTrainerPhiDice_Marginal"]
