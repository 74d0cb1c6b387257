"""Reading label files with workers from a plain script (no ``if __name__ == "__main__":``), ``python -c``,
a script on stdin (as a notebook runs code) and a DataLoader worker, each in a real process."""

import ast
import time

import nibabel as nib
import numpy as np
import pytest
import torch

import phidice
import phidice.epsilon as E
from _children import run_python


def write_nifti(path, labels):
    nib.save(nib.Nifti1Image(np.asarray(labels).astype(np.uint8), np.eye(4)), str(path))


@pytest.fixture(scope="module")
def label_folder(tmp_path_factory):
    """(project folder holding labels/, ε by numpy): six label maps, one without class 2, one all background."""
    root = tmp_path_factory.mktemp("project")
    (root / "labels").mkdir()
    rng = np.random.default_rng(3)
    maps = [rng.integers(0, 3, size=(12, 10, 6)) for _ in range(6)]
    maps[2][maps[2] == 2] = 1
    maps[4][...] = 0
    for i, m in enumerate(maps):
        write_nifti(root / "labels" / f"case{i}.nii.gz", m)
    eps = np.mean([[float((m == c).sum()) for c in range(3)] for m in maps], axis=0)
    return root, eps


def snippet(kwargs: str) -> str:
    return (
        "import phidice\n"
        f'eps = phidice.estimate_epsilon("labels/", num_classes=3{kwargs})\n'
        "print(eps)\n"
        "print(eps.tolist())\n"
    )


def check(lines, eps):
    assert lines[-2].startswith("tensor(["), lines
    np.testing.assert_allclose(ast.literal_eval(lines[-1]), eps, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kwargs", ["", ", workers=2"], ids=["default-workers", "workers=2"])
def test_script_without_main_guard(label_folder, kwargs):
    root, eps = label_folder
    (root / "script.py").write_text(snippet(kwargs))
    check(run_python(["script.py"], root), eps)


def test_python_c_and_stdin(label_folder):
    root, eps = label_folder
    check(run_python(["-c", snippet(", workers=2")], root), eps)
    check(run_python(["-"], root, stdin=snippet(", workers=2")), eps)  # __main__ without a file, as in a notebook


class EpsilonPerItem(torch.utils.data.Dataset):
    def __init__(self, folder):
        self.folder = folder

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return phidice.estimate_epsilon(self.folder, num_classes=3, workers=2, progress=False)


def test_inside_dataloader_worker(label_folder):
    """DataLoader workers are daemonic processes, which may not start child processes."""
    root, eps = label_folder
    loader = torch.utils.data.DataLoader(EpsilonPerItem(root / "labels"), batch_size=None, num_workers=1)
    for got in loader:
        np.testing.assert_allclose(got.numpy(), eps, rtol=1e-12, atol=0)


def test_no_process_is_started(label_folder, monkeypatch):
    import multiprocessing.process

    def refuse(self):
        raise AssertionError("phidice started a process to read files")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    root, eps = label_folder
    np.testing.assert_allclose(
        phidice.estimate_epsilon(root / "labels", num_classes=3, workers=2, progress=False), eps, rtol=1e-12, atol=0
    )


def test_error_stops_reading_the_remaining_files(tmp_path, monkeypatch):
    """A bad first file raises its error at once; files not yet started are not read."""
    write_nifti(tmp_path / "a00.nii.gz", np.full((2, 2, 2), 3))
    for i in range(1, 20):
        write_nifti(tmp_path / f"a{i:02d}.nii.gz", np.zeros((2, 2, 2)))
    read = []
    original = E._file_counts

    def slow(path, ignore_index):
        read.append(path)
        time.sleep(0.2)
        return original(path, ignore_index)

    monkeypatch.setattr(E, "_file_counts", slow)
    with pytest.raises(ValueError, match=r"a00\.nii\.gz' holds label 3 but num_classes=3"):
        phidice.estimate_epsilon(tmp_path, num_classes=3, workers=2, progress=False)
    assert len(read) < 20
