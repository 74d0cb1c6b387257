"""Short variants of phidice's trainers for the CPU runs in test_real_run.py (a few iterations, 1–2 epochs).

They keep nnU-Net's explicit ``__init__`` signature (nnU-Net records its arguments through ``inspect``).
"""

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
