"""``nnUNetv2_train ... -tr nnUNetTrainerPhiDice_Marginal`` (with ``nnUNet_extTrainer=$(phidice nnunet trainers-path)``)."""

from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Marginal  # noqa: F401
