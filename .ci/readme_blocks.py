"""Print the README's Python blocks that claim an install: ``python .ci/readme_blocks.py README.md base``.

A block claims its install with a comment on the line above its fence, ``<!-- install: base -->`` (torch,
numpy and numba), ``<!-- install: eval -->`` (``pip install "phidice[eval]"``), and so on; .ci/wheel_check.sh runs
each such block verbatim in a venv that has exactly that install. The blocks stay plain Markdown to readers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"<!-- install: ([a-z_,]+) -->\n```python\n(.*?)```", flags=re.S)


def blocks(path: Path, install: str) -> list[str]:
    return [code for names, code in BLOCK.findall(path.read_text()) if install in names.split(",")]


if __name__ == "__main__":
    found = blocks(Path(sys.argv[1]), sys.argv[2])
    if not found:
        sys.exit(f"{sys.argv[1]}: no Python block marked <!-- install: {sys.argv[2]} -->")
    print("\n\n".join(found))
