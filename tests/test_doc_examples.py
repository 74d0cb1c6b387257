"""The Python examples in the docs run and their assertions hold."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def python_blocks(name: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)
    assert blocks, f"no python example in docs/{name}"
    return blocks


@pytest.mark.parametrize("name", ["metrics.md", "missing_labels.md"])
def test_doc_examples_run(name):
    for code in python_blocks(name):
        exec(compile(code, str(DOCS / name), "exec"), {})


# Keras reads KERAS_BACKEND once, at import: each back end runs the examples in a process of its own
RUN_BLOCKS = """
import pathlib, re, sys
doc = pathlib.Path(sys.argv[1])
for code in re.findall(r"```python\\n(.*?)```", doc.read_text(), flags=re.S):
    exec(compile(code, str(doc), "exec"), {})
"""


@pytest.mark.parametrize("backend", ["jax", "torch", pytest.param("tensorflow", marks=pytest.mark.tensorflow)])
@pytest.mark.parametrize("name", ["keras.md"])
def test_keras_doc_examples_run(name, backend):
    assert python_blocks(name)
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", RUN_BLOCKS, str(DOCS / name)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"docs/{name} on {backend}:\n{proc.stderr[-4000:]}"
