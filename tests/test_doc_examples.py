"""Every Python block of README.md and docs/*.md runs, in order, one namespace per document.

Each document runs in its own process, in a folder holding what the examples read (``data/labelsTr``: a few
NIfTI label maps with 1 mm voxels) and with the environment of one torchrun rank (a one-process group).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MPLBACKEND": "Agg"}


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _label_files(folder: Path) -> None:
    nib = pytest.importorskip("nibabel")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        lab = np.zeros((24, 24, 24), np.uint8)
        c = rng.integers(6, 18, 3)
        lab[c[0] - 4:c[0] + 4, c[1] - 4:c[1] + 4, c[2] - 3:c[2] + 3] = 1
        if i % 2 == 0:  # class 2 in half of the images
            lab[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + 2] = 2
        nib.save(nib.Nifti1Image(lab, np.eye(4)), folder / f"case_{i}.nii.gz")


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d)], ids=lambda d: d.name)
def test_doc_python_blocks_run(doc, tmp_path, free_port):
    _label_files(tmp_path / "data" / "labelsTr")
    code = "\n\n".join(python_blocks(doc))
    script = tmp_path / "doc_blocks.py"
    script.write_text(code)
    env = {**os.environ, **ENV, "MASTER_PORT": str(free_port)}
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"{doc.name}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
