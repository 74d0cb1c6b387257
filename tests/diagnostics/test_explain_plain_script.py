"""phidice.explain on label files from a plain script (no ``if __name__ == "__main__":``) and ``python -c``,
each in a real process."""

import json

import nibabel as nib
import numpy as np
import pytest

from _children import run_python


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """labels/: 4 maps, classes 0..2; class 1 in two maps (30 and 50 voxels), class 2 in all (5, 9, 3, 4)."""
    root = tmp_path_factory.mktemp("project")
    (root / "labels").mkdir()
    for i, (n1, n2) in enumerate([(30, 5), (0, 9), (50, 3), (0, 4)]):
        a = np.zeros(256, np.uint8)
        a[:n1] = 1
        a[100 : 100 + n2] = 2
        nib.save(nib.Nifti1Image(a.reshape(8, 8, 4), np.eye(4)), str(root / "labels" / f"c{i}.nii.gz"))
    return root


def snippet(kwargs: str) -> str:
    return (
        "import json, phidice\n"
        f'r = phidice.explain(labels="labels/", eps="auto", batch_size=2{kwargs})\n'
        "print(json.dumps({'volume': r.volume, 'eps': r.eps, 'empty': r.empty_fraction}))\n"
    )


def check(lines):
    out = json.loads(lines[-1])
    assert out["volume"] == [40.0, 5.0]  # mean over the maps holding the class
    assert out["eps"] == pytest.approx([20.0, 5.25], rel=1e-12)  # E[Σy] over all maps
    assert out["empty"] == [0.5, 0.0]


@pytest.mark.parametrize("kwargs", ["", ", workers=2"], ids=["default-workers", "workers=2"])
def test_script_without_main_guard(project, kwargs):
    (project / "script.py").write_text(snippet(kwargs))
    check(run_python(["script.py"], project))


def test_python_c(project):
    check(run_python(["-c", snippet(", workers=2")], project))
