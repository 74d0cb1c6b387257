"""The Python examples in the docs run and their assertions hold."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name", ["metrics.md", "missing_labels.md"])
def test_doc_examples_run(name):
    doc = DOCS / name
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert blocks, f"no python example in docs/{name}"
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {})
