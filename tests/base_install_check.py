"""The base install — torch and numpy only — imports phidice and computes every loss.

The Makefile runs this script right after ``pip install -e .``, before any extra is installed; the suite runs it
too (``tests/test_base_install.py``). Either way the optional packages are hidden from the import system first,
so it checks the same thing in a venv that has them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import io
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
    "numba",
    "llvmlite",
    "triton",
    "monai",
    "keras",
    "jax",
    "tensorflow",
    "lightning",
    "pytorch_lightning",
    "nnunetv2",
)


class HideOptional(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import x`` of an optional package fail as if it were not installed.

    (``importlib.util.find_spec`` still answers, with a spec that cannot load: torch asks it at import.)
    """

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OPTIONAL:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (hidden: not in the base install)", name=spec.name)

    def exec_module(self, module):  # pragma: no cover - create_module raised
        raise ModuleNotFoundError(module.__name__)


def declared_requirements() -> set[str]:
    reqs = importlib.metadata.requires("phidice") or []
    return {re.split(r"[ <>=!;\[]", r, maxsplit=1)[0].lower() for r in reqs if "extra ==" not in r}


def main() -> None:
    assert declared_requirements() == {"torch", "numpy"}, declared_requirements()
    sys.meta_path.insert(0, HideOptional())
    import torch

    import phidice

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.randint(0, 3, (2, 8, 8))
    annotated = torch.tensor([[True, True, True], [True, True, False]])
    y_partial = torch.where((y == 2) & (torch.arange(2).view(2, 1, 1) == 1), 0, y)
    losses = [
        phidice.dice_loss(x, y, phi="BI"),  # fused="auto": the reference path without numba (the faster one)
        phidice.dice_loss(x, y, phi="BI", fused=True),  # the torch backend without numba
        phidice.dice_loss(x, y, phi="CI", fused=False, eps=[1.0, 2.0, 3.0]),
        phidice.DiceLoss("I", include_background=False)(x, y),
        phidice.DiceCELoss("BI", label_smoothing=0.1)(x, y),
        phidice.LeafDiceLoss()(x, y_partial, annotated),
        phidice.MarginalDiceCELoss()(x, y_partial, annotated),
    ]
    sum(losses).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    assert phidice.kernels.select_backend(x.device, x.dtype)[0] == "torch"
    assert phidice.kernels.auto_prefers_reference(x.device, x.dtype) is not None
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
    hidden = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL)
    assert not hidden, hidden
    print("base install: phidice imports and computes its losses with torch and numpy only")


if __name__ == "__main__":
    main()
