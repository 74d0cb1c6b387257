"""``nnUNetv2_train ... -tr nnUNetTrainerPhiDice_Ieps`` (with ``nnUNet_extTrainer=$(phidice nnunet trainers-path)``)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Ieps  # noqa: F401
