"""nnU-Net v2 trainers whose loss is phidice's Dice with explicit Φ and ε (``pip install phidice[nnunet]``).

nnU-Net ≥ 2.8 finds trainer classes in the folders listed in the environment variable ``nnUNet_extTrainer``;
:func:`trainers_path` (or ``phidice nnunet trainers-path``) is the folder to put there::

    export nnUNet_extTrainer=$(phidice nnunet trainers-path)
    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerPhiDice
    nnUNetv2_predict -i imagesTs -o pred -d 501 -c 3d_fullres -f 0 -tr nnUNetTrainerPhiDice

Trainers (see docs/nnunet.md): ``nnUNetTrainerPhiDice`` (nnU-Net's Dice + CE through phidice: Φ = BI when the
plans say ``batch_dice``, else I; ε = 1e-5), ``nnUNetTrainerPhiDice_I``, ``nnUNetTrainerPhiDice_BI``,
``nnUNetTrainerPhiDice_Ieps`` (Φ = I, ε = E[Σy] measured on training patches), ``nnUNetTrainerPhiDice_Leaf`` and
``nnUNetTrainerPhiDice_Marginal`` (partially annotated cases listed in ``annotated_labels.json``). Any other Φ, ε,
``eps_empty`` or Dice-only loss is a ``"phidice"`` entry of a plans configuration (``phidice nnunet add-config``).

Importing this package checks that nnunetv2 ≥ 2.8 is installed (ImportError otherwise). The trainer classes
are imported on first access, since importing nnU-Net's trainer pulls in its data-loading stack.

``merge_datasets`` (``phidice nnunet merge``, :mod:`.merge`) pools several raw datasets into one, labels united
by name, with ``annotated_labels.json`` for the partial-label trainers (docs/pooling.md).
"""

from __future__ import annotations

import importlib
import os
import re

MIN_NNUNET = (2, 8)
INSTALL_HINT = "pip install phidice[nnunet]"

TRAINER_NAMES = (
    "nnUNetTrainerPhiDice",
    "nnUNetTrainerPhiDice_I",
    "nnUNetTrainerPhiDice_BI",
    "nnUNetTrainerPhiDice_Ieps",
    "nnUNetTrainerPhiDice_Leaf",
    "nnUNetTrainerPhiDice_Marginal",
)


def _parse_version(text: str) -> tuple[int, ...]:
    m = re.match(r"^\s*v?(\d+)(?:\.(\d+))?", str(text))
    if m is None:
        return ()
    return tuple(int(g) for g in m.groups() if g is not None)


def check_nnunet_version(version: str | None, where: str = "") -> None:
    """ImportError unless ``version`` (nnunetv2's, None = not installed) is ≥ 2.8."""
    at = f" at {where}" if where else ""
    if version is None:
        raise ImportError(
            f"phidice's nnU-Net trainers need nnunetv2 >= {MIN_NNUNET[0]}.{MIN_NNUNET[1]}, which is "
            f"not installed: {INSTALL_HINT}"
        )
    parsed = _parse_version(version)
    if not parsed or parsed < MIN_NNUNET:
        raise ImportError(
            f"phidice's nnU-Net trainers need nnunetv2 >= {MIN_NNUNET[0]}.{MIN_NNUNET[1]} (the version whose "
            f"`nnUNetv2_train -tr` searches the folders in nnUNet_extTrainer); found nnunetv2 {version}{at}: "
            f"pip install -U 'nnunetv2>={MIN_NNUNET[0]}.{MIN_NNUNET[1]}' (or {INSTALL_HINT})"
        )


def installed_nnunet() -> tuple[str | None, str]:
    """(version, location) of the installed nnunetv2; (None, "") when it is missing."""
    from importlib import metadata

    try:
        dist = metadata.distribution("nnunetv2")
    except metadata.PackageNotFoundError:
        return None, ""
    try:
        where = str(dist.locate_file("nnunetv2"))
    except Exception:  # noqa: BLE001 - the location only decorates the message
        where = ""
    return dist.version, where


def _check_installed() -> None:
    version, where = installed_nnunet()
    check_nnunet_version(version, where)
    try:
        importlib.import_module("nnunetv2")
    except ImportError as err:  # metadata without an importable package (a broken install)
        raise ImportError(f"nnunetv2 {version} is registered but cannot be imported ({err}): {INSTALL_HINT}") from err


_check_installed()


MERGE_NAMES = ("merge_datasets", "MergeSummary")  # from .merge, on first use


def trainers_path() -> str:
    """The folder of trainer modules to list in ``nnUNet_extTrainer`` (absolute path)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "trainers")


def __getattr__(name: str):
    if name in TRAINER_NAMES:
        from phidice.integrations.nnunet import training

        return getattr(training, name)
    if name in MERGE_NAMES:
        from phidice.integrations.nnunet import merge  # reads label files: nibabel/SimpleITK on first use

        return getattr(merge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MIN_NNUNET",
    "TRAINER_NAMES",
    "check_nnunet_version",
    "installed_nnunet",
    "trainers_path",
    *MERGE_NAMES,
    *TRAINER_NAMES,
]
