"""Short variants of phidice's trainers for the CPU runs in test_real_run.py (a few iterations, 1–2 epochs).

They keep nnU-Net's explicit ``__init__`` signature (nnU-Net records its arguments through ``inspect``).
"""

import os

import torch

from phidice.integrations.nnunet.training import (
    nnUNetTrainerPhiDice,
    nnUNetTrainerPhiDice_Ieps,
    nnUNetTrainerPhiDice_Leaf,
)


def _shorten(trainer) -> None:
    trainer.num_epochs = 2
    trainer.num_iterations_per_epoch = 4
    trainer.num_val_iterations_per_epoch = 2


class nnUNetTrainerPhiDice_Tiny(nnUNetTrainerPhiDice):
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        _shorten(self)


class nnUNetTrainerPhiDice_Ieps_Tiny(nnUNetTrainerPhiDice_Ieps):
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        _shorten(self)


class nnUNetTrainerPhiDice_Leaf_Tiny(nnUNetTrainerPhiDice_Leaf):
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        _shorten(self)


class nnUNetTrainerPhiDice_TinyCompileOnCPU(nnUNetTrainerPhiDice_Tiny):
    """nnU-Net's compile rule without its CPU exclusion: nnUNet_compile unset or true/1/t compiles.

    ``nnUNetTrainer._do_i_compile`` returns False on CPU whatever ``nnUNet_compile`` says, so a CPU run never
    shows the compiled path; here nnU-Net compiles its network and phidice its loss levels as on a GPU."""

    def _do_i_compile(self):
        return os.environ.get("nnUNet_compile", "true").lower() in ("true", "1", "t")
