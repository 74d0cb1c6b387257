"""The library's functions stay short enough to read top to bottom: at most 60 lines of body (the docstring
not counted), unless the docstring says why it is longer ("long on purpose: …")."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "phidice"
LIMIT = 60


def body_lines(node) -> int:
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    return 0 if not body else node.end_lineno - body[0].lineno + 1


def test_no_long_functions_without_a_reason():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(node) > LIMIT:
                if "long on purpose" not in (ast.get_docstring(node) or ""):
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {body_lines(node)} lines")
    assert not long, "\n".join(long)


def test_no_function_over_80_lines_even_on_purpose():
    """Signature, docstring and body together: a longer function is split into named steps."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
                )
    assert not long, "\n".join(long)


def test_the_count_skips_the_docstring():
    tree = ast.parse('def f():\n    """doc\n    more"""\n    x = 1\n    return x\n')
    assert body_lines(tree.body[0]) == 2
