"""`pip install phidice` is torch + numpy + numba (numba where it ships wheels): with every optional package
hidden, phidice imports, computes its losses on the numba kernel, and names the extra to install where a file or
plot needs one; with numba hidden too (a platform without numba wheels) the same losses run on the reference
path and the PyTorch fallback (tests/base_install_check.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("base_install_check.py")


@pytest.mark.parametrize(
    "args, says",
    [
        ([], "with torch, numpy and numba"),
        (["--without-numba"], "without numba: phidice imports and computes its losses with torch and numpy only"),
    ],
    ids=["base", "without-numba"],
)
def test_base_install_computes_losses(args, says):
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert says in out.stdout
