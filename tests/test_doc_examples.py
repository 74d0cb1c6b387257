"""Every Python block of README.md and docs/*.md runs, in order, one namespace per document.

Each document runs in its own process, in a folder holding what the examples read (``data/labelsTr``: a few
NIfTI label maps with 1 mm voxels) and with the environment of one torchrun rank (a one-process group).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _children import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MPLBACKEND": "Agg"}


# on the line above a block: a link to a file of examples/ (the block is an excerpt of a script that runs in
# tests/examples, which checks that it is), or a comment naming the test that runs the block itself
EXCERPT = re.compile(r"\[[^\]]*\]\(\.\./(examples/[^)#]+)\)")
RUN_BY = re.compile(r"<!-- run by (tests/[^ ]+\.py)")


def python_blocks(path: Path, elsewhere: bool = False) -> list[str]:
    """The document's Python blocks run here; with ``elsewhere``, those that an example or a named test runs."""
    return [block for block, where in _blocks_and_runners(path) if (where is not None) == elsewhere]


def _blocks_and_runners(path: Path) -> list[tuple[str, str | None]]:
    text = path.read_text()
    out = []
    for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        above = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        where = EXCERPT.search(above) or RUN_BY.search(above)
        out.append((m.group(1), where.group(1) if where else None))
    return out


def _label_files(folder: Path) -> None:
    nib = pytest.importorskip("nibabel")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        lab = np.zeros((24, 24, 24), np.uint8)
        c = rng.integers(6, 18, 3)
        lab[c[0] - 4 : c[0] + 4, c[1] - 4 : c[1] + 4, c[2] - 3 : c[2] + 3] = 1
        if i % 2 == 0:  # class 2 in half of the images
            lab[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = 2
        nib.save(nib.Nifti1Image(lab, np.eye(4)), folder / f"case_{i}.nii.gz")


def _run_blocks(doc: Path, tmp_path: Path, env: dict) -> None:
    _label_files(tmp_path / "data" / "labelsTr")
    script = tmp_path / "doc_blocks.py"
    script.write_text("\n\n".join(python_blocks(doc)))
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, **ENV, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"{doc.name}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"


KERAS_DOC = ROOT / "docs" / "keras.md"


@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d) and d != KERAS_DOC], ids=lambda d: d.name)
def test_doc_python_blocks_run(doc, tmp_path):
    _run_blocks(doc, tmp_path, {"MASTER_PORT": str(free_port())})


# Keras reads KERAS_BACKEND once, at import: each back end runs the page in a process of its own
@pytest.mark.parametrize("backend", ["jax", "torch", pytest.param("tensorflow", marks=pytest.mark.tensorflow)])
def test_keras_doc_blocks_run(backend, tmp_path):
    if importlib.util.find_spec("keras") is None:  # importing keras here would pick its default back end
        pytest.skip("keras is not installed")
    assert python_blocks(KERAS_DOC)
    _run_blocks(
        KERAS_DOC,
        tmp_path,
        {"KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_the_other_blocks_run_elsewhere():
    """Every block not run here is an excerpt of an example script or names the test that runs it, and that test
    reads this document."""
    for doc in DOCS:
        for _block, where in _blocks_and_runners(doc):
            if where is None:
                continue
            assert (ROOT / where).is_file(), f"{doc.name}: {where} does not exist"
            if where.startswith("tests/"):
                assert doc.name in (ROOT / where).read_text(), f"{where} does not read docs/{doc.name}"
            else:
                assert where.startswith("examples/") and where.endswith(".py"), where
