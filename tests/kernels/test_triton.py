"""The Triton kernels: run on the CPU by Triton's interpreter (TRITON_INTERPRET=1), and compiled ahead of time for
an H100/H200 (sm_90) by Triton's own compiler — each in a fresh process, no GPU needed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def _has_nvidia_backend() -> bool:
    try:
        from triton.backends import backends
    except ImportError:
        return False
    return "nvidia" in backends


@pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or not _has_nvidia_backend(), reason="triton without its NVIDIA backend"
)
def test_triton_kernels_compile_for_h100(tmp_path):
    """The real lowering (TTIR → PTX → cubin via ptxas) for sm_90, which the interpreter never exercises."""
    script = Path(__file__).with_name("triton_compile_check.py")
    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path / "cache"))  # compile for real, not from a cache
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, str(script), "90"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TRITON-COMPILE-OK" in proc.stdout


def test_triton_rejects_images_past_int32_offsets():
    """Voxel offsets inside an image are int32 in the kernels: a larger image gets a clear error, not garbage."""
    from phidice.kernels import triton_dice

    x = torch.empty(1, 2, 2**31, device="meta")
    labels = torch.empty(1, 2**31, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match=r"at most 2\^31 − 1 voxels per image; got 2147483648: use fused=False"):
        triton_dice.forward(x, labels, None, "softmax")
