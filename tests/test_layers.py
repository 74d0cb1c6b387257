"""The architecture's rule, checked on the source: every import points down a layer, and no function hides an
import of phidice to dodge a cycle. Each module also imports alone, first, in a fresh set of phidice modules.

    core  <  io, progress, kernels  <  sums  <  equations  <  distributed  <  losses, metrics, epsilon  <  missing
          <  diagnostics  <  the phidice facade  <  experiments, integrations, keras  <  cli
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "phidice"

RANKS = {
    "phidice.core": 0,
    "phidice.io": 1,
    "phidice.progress": 1,
    "phidice.kernels": 1,
    "phidice.ops": 1.5,  # the deprecated alias of phidice.kernels
    "phidice.sums": 2,
    "phidice.equations": 3,
    "phidice.distributed": 4,
    "phidice.losses": 5,
    "phidice.metrics": 5,
    "phidice.epsilon": 5,
    "phidice.missing": 6,
    "phidice.diagnostics": 7,
    "phidice": 7.5,  # the public facade (lazy): above everything it exports
    "phidice.experiments": 8,
    "phidice.integrations": 8,
    "phidice.keras": 8,
    "phidice.cli": 9,
    "phidice.__main__": 10,
}
# imported inside a function on purpose: optional kernel backends (loaded on first use, the dependency may be
# missing) and the commands' own modules (loaded when the command runs, so `phidice --help` needs no extra)
DEFERRED = {
    ("phidice.kernels", "phidice.kernels.triton_dice"),
    ("phidice.kernels.cpu", "phidice.kernels._numba_cpu"),
    ("phidice.integrations.nnunet", "phidice.integrations.nnunet.training"),  # nnU-Net's data-loading stack
    ("phidice.integrations.nnunet", "phidice.integrations.nnunet.merge"),  # the dataset merger, on first use
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def rank(name: str) -> int:
    best = max((k for k in RANKS if name == k or name.startswith(k + ".")), key=len)
    return RANKS[best]


def package_of(name: str) -> str:
    return max((k for k in RANKS if name == k or name.startswith(k + ".")), key=len)


def imports(path: Path, known: dict) -> list[tuple[str, bool, int]]:
    """(imported phidice module, inside a function, line) for every import statement of the file."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function, child.lineno) for a in child.names if a.name.startswith("phidice"))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("phidice"):
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    out.append((sub if sub in known else child.module, in_function, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return out


def test_imports_point_down():
    known = modules()
    wrong = []
    for name, path in known.items():
        for target, _in_function, line in imports(path, known):
            same_package = package_of(target) == package_of(name) and target != "phidice"
            if not same_package and rank(target) >= rank(name):
                wrong.append(f"{name}:{line} imports {target} (layer {rank(target)} ≥ {rank(name)})")
    assert not wrong, "\n".join(wrong)


def test_no_function_level_imports_of_phidice():
    known = modules()
    hidden = []
    for name, path in known.items():
        for target, in_function, line in imports(path, known):
            if in_function and (name, target) not in DEFERRED and not name.startswith("phidice.cli."):
                hidden.append(f"{name}:{line} imports {target} inside a function")
    assert not hidden, "\n".join(hidden)


def test_the_rule_can_fail(tmp_path):
    """The checks above see an upward import and one inside a function."""
    bad = tmp_path / "bad.py"
    bad.write_text("from phidice.losses.dice import dice_loss\n\ndef f():\n    import phidice.sums\n")
    found = imports(bad, modules())
    assert ("phidice.losses.dice", False, 1) in found and ("phidice.sums", True, 4) in found
    assert rank("phidice.losses.dice") > rank("phidice.kernels.cpu")


OPTIONAL_ROOTS = ("keras", "jax", "tensorflow", "lightning", "nnunetv2", "monai", "nilearn")


def test_each_module_imports_alone_first():
    """Import every module first, after forgetting all of phidice: an import cycle would fail for some order."""
    names = [n for n in modules() if not n.endswith("__main__")]
    script = textwrap.dedent(f"""
        import importlib, sys
        failed = []
        for name in {names!r}:
            for m in [m for m in sys.modules if m == "phidice" or m.startswith("phidice.")]:
                del sys.modules[m]
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as err:
                if (err.name or "").split(".")[0] not in {OPTIONAL_ROOTS!r}:
                    failed.append(f"{{name}}: {{err!r}}")
            except ImportError as err:  # an integration whose extra is missing says which to install
                if "pip install" not in str(err) or "phidice[" not in str(err):
                    failed.append(f"{{name}}: {{err!r}}")
            except Exception as err:
                failed.append(f"{{name}}: {{err!r}}")
        print("\\n".join(failed))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=SRC.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout


@pytest.mark.parametrize("name", ["phidice.core.config", "phidice.core.phi", "phidice.core.types", "phidice.equations"])
def test_shared_with_keras_without_torch(name):
    """The configuration and the equations import without torch (phidice.keras uses them)."""
    script = f"import sys, {name}; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=SRC.parent)
    assert out.returncode == 0, out.stderr
