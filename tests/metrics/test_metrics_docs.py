"""The example in docs/metrics.md runs and its assertions hold."""

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_doc_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "no python example in docs/metrics.md"
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {})
