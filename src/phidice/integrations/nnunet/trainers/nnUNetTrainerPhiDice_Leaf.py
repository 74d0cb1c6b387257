"""``nnUNetv2_train ... -tr nnUNetTrainerPhiDice_Leaf`` (with ``nnUNet_extTrainer=$(phidice nnunet trainers-path)``)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Leaf  # noqa: F401
