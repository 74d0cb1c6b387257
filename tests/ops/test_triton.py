"""The Triton kernels, run on the CPU by Triton's interpreter (TRITON_INTERPRET=1) in a fresh process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
]


def test_triton_kernels_under_interpreter():
    script = Path(__file__).with_name("triton_interpret_check.py")
    env = dict(os.environ, TRITON_INTERPRET="1")
    env.pop("PHIDICE_FUSED_BACKEND", None)
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TRITON-INTERPRET-OK" in proc.stdout
