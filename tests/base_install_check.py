"""The base install — torch, numpy and numba (where numba ships wheels) — imports phidice and computes every loss.

The Makefile runs this script right after ``pip install -e .``, before any extra is installed; the suite runs it
too (``tests/test_base_install.py``). Either way the optional packages are hidden from the import system first,
so it checks the same thing in a venv that has them.

``--without-numba`` hides numba and llvmlite as well: the install on a platform numba has no wheels for (the
environment marker of pyproject.toml leaves it out there), or with a numba that does not import. phidice must
compute the same losses there, by the reference path and the PyTorch fallback.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.metadata
import io
import json
import re
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

OPTIONAL = (
    "nibabel",
    "SimpleITK",
    "matplotlib",
    "tqdm",
    "nilearn",
    "scipy",
    "triton",
    "monai",
    "keras",
    "jax",
    "tensorflow",
    "lightning",
    "pytorch_lightning",
    "nnunetv2",
)
NUMBA = ("numba", "llvmlite")  # in the base install where numba has wheels; hidden by --without-numba
BASE = {"torch", "numpy", "numba"}  # the requirements of `pip install phidice` (numba's under a platform marker)
ROOT = Path(__file__).resolve().parents[1]


class HideOptional(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import x`` of an optional package fail as if it were not installed.

    (``importlib.util.find_spec`` still answers, with a spec that cannot load: torch asks it at import.)
    """

    def __init__(self, hidden: tuple[str, ...]):
        self.hidden = hidden

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.hidden:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (hidden: not in the base install)", name=spec.name)

    def exec_module(self, module):  # pragma: no cover - create_module raised
        raise ModuleNotFoundError(module.__name__)


def _editable_elsewhere() -> bool:
    """Whether the installed phidice is an editable install of another checkout (its metadata is not this tree's)."""
    dist = importlib.metadata.distribution("phidice")
    info = json.loads(dist.read_text("direct_url.json") or "{}")
    return info.get("dir_info", {}).get("editable", False) and info["url"].removeprefix("file://") != str(ROOT)


def declared_requirements() -> set[str]:
    """The names of phidice's base requirements: the installed metadata's, or this tree's pyproject.toml when the
    installed phidice is an editable install of another checkout."""
    if _editable_elsewhere() and (ROOT / "pyproject.toml").is_file() and sys.version_info >= (3, 11):
        import tomllib

        reqs = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    else:
        reqs = [r for r in importlib.metadata.requires("phidice") or [] if not re.search(r"extra\s*==", r)]
    return {re.split(r"[ <>=!;\[]", r, maxsplit=1)[0].lower() for r in reqs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without-numba", action="store_true", help="hide numba and llvmlite too")
    without_numba = parser.parse_args(argv).without_numba
    hidden = OPTIONAL + NUMBA if without_numba else OPTIONAL
    assert declared_requirements() == BASE, declared_requirements()
    sys.meta_path.insert(0, HideOptional(hidden))
    import torch

    import phidice

    # `import phidice` stays light: numba is imported by the first fused loss on the CPU, not here
    assert "numba" not in sys.modules, "import phidice imported numba"

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.randint(0, 3, (2, 8, 8))
    annotated = torch.tensor([[True, True, True], [True, True, False]])
    y_partial = torch.where((y == 2) & (torch.arange(2).view(2, 1, 1) == 1), 0, y)
    losses = [
        phidice.dice_loss(x, y, phi="BI"),  # fused="auto": numba, or the reference path without it (the faster one)
        phidice.dice_loss(x, y, phi="BI", fused=True),  # numba, or the torch backend without it
        phidice.dice_loss(x, y, phi="CI", fused=False, eps=[1.0, 2.0, 3.0]),
        phidice.DiceLoss("I", include_background=False)(x, y),
        phidice.DiceCELoss("BI", label_smoothing=0.1)(x, y),
        phidice.LeafDiceLoss()(x, y_partial, annotated),
        phidice.MarginalDiceCELoss()(x, y_partial, annotated),
    ]
    sum(losses).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    backend = phidice.kernels.select_backend(x.device, x.dtype)[0]
    reference_reason = phidice.kernels.auto_prefers_reference(x.device, x.dtype)
    if without_numba:
        assert backend == "torch", backend
        assert reference_reason is not None
    else:
        why = phidice.kernels.cpu._import_error
        assert backend == "numba", f"float32 on the CPU runs the {backend!r} backend, not numba (import error: {why})"
        assert reference_reason is None, reference_reason
        fused = phidice.dice_loss(x, y, phi="BI", fused=True)
        torch.testing.assert_close(fused, phidice.dice_loss(x, y, phi="BI", fused=False))
    phidice.dice_gradient(torch.softmax(x.detach(), 1), y, "I")
    eps = phidice.estimate_epsilon(y, num_classes=3, progress=True)
    assert eps.shape == (3,)
    print(phidice.explain(phi="I", eps=1e-5, batch_size=2, volumes=[100.0]).to_markdown()[:40])
    from phidice.metrics import dice_score

    dice_score(y, y, num_classes=3)
    with redirect_stdout(io.StringIO()):
        from phidice.cli.main import main as cli

        try:
            cli(["--help"])
        except SystemExit as e:
            assert e.code == 0
    with tempfile.TemporaryDirectory() as tmp:  # a label file: a clear error naming the extra
        (Path(tmp) / "a.nii.gz").write_bytes(b"not read")
        try:
            phidice.estimate_epsilon(tmp, progress=False)
        except ImportError as err:
            assert "phidice[io]" in str(err), err
        else:
            raise AssertionError("reading NIfTI without nibabel did not raise ImportError")
    imported = sorted(m for m in sys.modules if m.split(".")[0] in hidden)
    assert not imported, imported
    if without_numba:
        print("base install without numba: phidice imports and computes its losses with torch and numpy only")
    else:
        print("base install: phidice imports and computes its losses with torch, numpy and numba")


if __name__ == "__main__":
    main()
