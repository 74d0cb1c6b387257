"""Each extra imports what it promises, and without it the feature's error names the pip command.

``python .ci/extras_check.py missing``: run in an install of the base package only; each feature that needs an
extra must fail with an ImportError naming ``pip install 'phidice[<extra>]'``.
``python .ci/extras_check.py present``: run after ``pip install 'phidice[all]'``; every module each extra promises
imports, and the feature that needs it works.
The extras of pyproject.toml and the table below must match, so a new extra gets a line here.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # the back end that the base install already has

# extra -> (modules it installs, phidice modules or features it enables)
EXTRAS = {
    "numba": (["numba"], ["phidice.kernels._numba_cpu"]),
    "triton": (["triton"], ["phidice.kernels.triton_dice"]),
    "io": (["nibabel", "SimpleITK", "tqdm"], ["phidice.io"]),
    "plots": (["matplotlib"], []),
    "eval": (["scipy", "nibabel", "matplotlib"], ["phidice.metrics.surface", "phidice.cli.evaluate"]),
    "experiments": (["nilearn", "scipy"], ["phidice.experiments.data", "phidice.experiments.report"]),
    "monai": (["monai", "ignite", "fire"], ["phidice.integrations.monai"]),
    "keras": (["keras"], ["phidice.keras"]),
    "lightning": (["lightning"], ["phidice.integrations.lightning"]),
}
NOT_CHECKED = {"all", "test", "docs", "dev", "nnunet"}  # aggregates, tool sets, and nnU-Net's own stack


def _declared_extras() -> set[str]:
    return set(importlib.metadata.metadata("phidice").get_all("Provides-Extra") or [])


def _nifti_file(folder: str) -> str:
    path = Path(folder) / "a.nii.gz"
    path.write_bytes(b"not read")
    return str(path)


def _features_missing() -> dict[str, callable]:
    """What fails in the base install, and the extra its message must name."""
    import torch

    import phidice

    def surface():
        from phidice.metrics import surface_metrics

        y = torch.zeros(1, 4, 4, dtype=torch.long)
        surface_metrics(y, y, spacing=(1.0, 1.0))

    def keras():
        importlib.import_module("phidice.keras")

    def monai():
        importlib.import_module("phidice.integrations.monai")

    def reproduce():
        from phidice.experiments import make_dataset

        make_dataset("binary")

    nifti = _nifti_file(tempfile.mkdtemp())  # read when the feature runs, below
    return {
        "io": lambda: phidice.estimate_epsilon(nifti, progress=False),
        "eval": surface,
        "keras": keras,
        "monai": monai,
        "experiments": reproduce,
    }


def check_missing() -> None:
    failures = []
    for extra, feature in _features_missing().items():
        try:
            feature()
        except ImportError as err:
            if f"pip install 'phidice[{extra}]'" not in str(err) and f'pip install "phidice[{extra}]"' not in str(err):
                failures.append(f"[{extra}] error does not name the pip command: {err}")
        except Exception as err:  # noqa: BLE001 - reported with its type
            failures.append(f"[{extra}] raised {type(err).__name__} instead of ImportError: {err}")
        else:
            failures.append(f"[{extra}] the feature ran without its extra: is the extra installed here?")
    if failures:
        sys.exit("\n".join(failures))
    print(f"missing extras: each of {sorted(_features_missing())} names its pip command")


def check_present() -> None:
    declared = _declared_extras()
    unknown = declared - set(EXTRAS) - NOT_CHECKED
    assert not unknown, f"extras without a line in .ci/extras_check.py: {sorted(unknown)}"
    for extra, (modules, features) in EXTRAS.items():
        assert extra in declared, f"[{extra}] is not an extra of the installed phidice: {sorted(declared)}"
        for name in modules + features:
            importlib.import_module(name)
    for req in importlib.metadata.requires("phidice") or []:  # every requirement of [all] is installed
        if re.search(r"extra\s*==\s*['\"]all['\"]", req):
            inner = re.match(r"phidice\[([^\]]+)\]", req)
            assert inner, req
    import torch

    import phidice

    with tempfile.TemporaryDirectory() as tmp:
        nib = importlib.import_module("nibabel")
        import numpy as np

        lab = np.zeros((6, 6, 6), np.uint8)
        lab[1:3, 1:3, 1:3] = 1
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(Path(tmp) / "a.nii.gz"))
        eps = phidice.estimate_epsilon(tmp, progress=False)
        assert eps.tolist() == [208.0, 8.0], eps
    from phidice.metrics import surface_metrics

    y = torch.zeros(1, 6, 6, dtype=torch.long)
    y[0, 1:4, 1:4] = 1
    assert float(surface_metrics(y, y, spacing=(1.0, 1.0), include_background=False).hd95) == 0.0
    from phidice.kernels import select_backend

    assert select_backend(torch.device("cpu"), torch.float32)[0] == "numba"
    import phidice.keras

    assert phidice.keras.DiceLoss(phi="BI").get_config()["phi"] == "BI"
    print(f"present extras: {sorted(EXTRAS)} import what they promise")


if __name__ == "__main__":
    {"missing": check_missing, "present": check_present}[sys.argv[1]]()
