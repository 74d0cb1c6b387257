"""Run by .ci/wheel_check.sh against the installed wheel (PHIDICE_INSTALLED_VENV names its venv); skipped in a
checkout, where the package imported is the source tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import phidice

VENV = os.environ.get("PHIDICE_INSTALLED_VENV")
pytestmark = pytest.mark.skipif(not VENV, reason="runs in the venv of the installed wheel (make wheel-test)")


def test_the_package_under_test_is_the_installed_one():
    assert Path(phidice.__file__).resolve().is_relative_to(Path(VENV).resolve()), phidice.__file__


def test_installed_package_carries_its_data_files():
    from phidice.integrations.nnunet import TRAINER_NAMES  # (trainers_path() itself needs nnunetv2 installed)

    folder = Path(phidice.__file__).resolve().parent / "integrations" / "nnunet" / "trainers"
    assert {f"{name}.py" for name in TRAINER_NAMES} <= {p.name for p in folder.iterdir()}
    assert (Path(phidice.__file__).parent / "py.typed").is_file()
