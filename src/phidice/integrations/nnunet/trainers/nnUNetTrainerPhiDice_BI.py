"""``nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerPhiDice_BI`` (see docs/nnunet.md)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_BI

__all__ = ["nnUNetTrainerPhiDice_BI"]
