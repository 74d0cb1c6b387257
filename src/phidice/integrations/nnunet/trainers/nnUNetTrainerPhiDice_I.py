"""``nnUNetv2_train ... -tr nnUNetTrainerPhiDice_I`` (with ``nnUNet_extTrainer=$(phidice nnunet trainers-path)``)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_I  # noqa: F401
