"""``nnUNetv2_train ... -tr nnUNetTrainerPhiDice`` (with ``nnUNet_extTrainer=$(phidice nnunet trainers-path)``)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice  # noqa: F401
