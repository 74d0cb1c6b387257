"""``phidice.ops``, the deprecated name of ``phidice.kernels``: a warning, and the very same objects."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_old_name_warns_and_gives_the_same_objects():
    done = _run(
        """
        import phidice.kernels as kernels
        import phidice.ops as ops
        import phidice.ops.cpu
        from phidice.ops import fallback, set_backend
        from phidice.ops.function import FusedDiceStats
        assert ops.fused_stats is kernels.fused_stats
        assert set_backend is kernels.set_backend
        assert phidice.ops.cpu is kernels.cpu and fallback is kernels.fallback
        assert FusedDiceStats is kernels.function.FusedDiceStats
        print("same")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "same"
    assert "phidice.ops was renamed phidice.kernels" in done.stderr


def test_an_unknown_name_is_an_attribute_error_naming_it():
    done = _run(
        """
        import phidice.ops as ops
        try:
            ops.no_such_kernel
        except AttributeError as e:
            print(e)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "'phidice.ops' has no attribute 'no_such_kernel'" in done.stdout


def test_the_new_name_does_not_warn():
    done = _run("import phidice, phidice.kernels, phidice.sums")
    assert done.returncode == 0, done.stderr
    assert "DeprecationWarning" not in done.stderr
