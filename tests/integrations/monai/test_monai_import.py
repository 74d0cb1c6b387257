"""Without MONAI, importing the integration says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_missing_monai_names_the_extra():
    script = textwrap.dedent("""
        import sys
        sys.modules["monai"] = None  # as if MONAI were not installed
        import phidice
        phidice.DiceCELoss()  # the core needs no MONAI
        try:
            import phidice.integrations.monai.transforms
        except ImportError as err:
            print(err)
        else:
            raise SystemExit("imported without MONAI")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "phidice.integrations.monai needs monai, which is not installed: pip install 'phidice[monai]'" in out.stdout
