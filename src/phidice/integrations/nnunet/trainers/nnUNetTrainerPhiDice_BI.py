"""``nnUNetv2_train ... -tr nnUNetTrainerPhiDice_BI`` (with ``nnUNet_extTrainer=$(phidice nnunet trainers-path)``)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_BI  # noqa: F401
