"""The example in docs/missing_labels.md runs."""

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "missing_labels.md"


def test_doc_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "no python example in docs/missing_labels.md"
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {})
