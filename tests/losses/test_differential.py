"""Differential property tests: every path of the losses (reference functional and module, fused torch and numba)
gives the same loss and gradient on drawn cases, and NaN wherever the activation is NaN (_differential.py says what
is drawn). ``make test`` runs a bounded, derandomized number of examples; ``make fuzz`` the long run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _differential

BACKENDS = ("torch", "numba")


@settings(settings.get_profile(_differential.PROFILE))
@given(_differential.cases())
def test_every_path_agrees(case):
    _differential.check_case(case, BACKENDS)
