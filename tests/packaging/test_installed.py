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


def test_installed_package_has_every_file_of_the_source_package():
    """Every module and data file of src/phidice (the nnU-Net trainer folder, py.typed) was installed."""
    source = Path(__file__).resolve().parents[2] / "src" / "phidice"
    installed = Path(phidice.__file__).resolve().parent
    files = {p.relative_to(source) for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert Path("py.typed") in files and Path("integrations/nnunet/trainers/nnUNetTrainerPhiDice.py") in files
    assert not [f for f in files if not (installed / f).is_file()]
