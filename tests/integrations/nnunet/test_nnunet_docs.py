"""docs/nnunet.md: the BraTS 2018 conversion example runs on a miniature BraTS layout and gives a dataset that
``make-partial`` accepts (HGG/LGG groups, whole tumour = label > 0)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

from phidice.cli.main import main

DOC = Path(__file__).resolve().parents[3] / "docs" / "nnunet.md"


def _conversion_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b for b in blocks if "MICCAI_BraTS_2018_Data_Training" in b]
    assert len(found) == 1, "docs/nnunet.md: the BraTS conversion example is missing"
    return found[0]


def test_brats_conversion_example(tmp_path, monkeypatch, capsys):
    src = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    rng = np.random.default_rng(0)
    cases = {"HGG": ["Brats18_2013_2_1", "Brats18_CBICA_AAB_1"], "LGG": ["Brats18_2013_0_1"]}
    for grade, names in cases.items():
        for name in names:
            d = src / grade / name
            d.mkdir(parents=True)
            for mod in ("t1", "t1ce", "t2", "flair"):
                nib.save(
                    nib.Nifti1Image(rng.normal(size=(6, 6, 4)).astype(np.float32), np.eye(4)),
                    d / f"{name}_{mod}.nii.gz",
                )
            seg = np.zeros((6, 6, 4), np.uint8)
            seg[1:3, 1:3, 1] = 1
            seg[3, 3, 2] = 2
            seg[4, 4, 3] = 4  # BraTS labels 1, 2, 4: all whole tumour
            nib.save(nib.Nifti1Image(seg, np.eye(4)), d / f"{name}_seg.nii.gz")
    raw = tmp_path / "nnUNet_raw"
    code = _conversion_example().replace("/data/nnUNet_raw", str(raw))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {})

    ds = raw / "Dataset501_BraTS18WT"
    assert len(list((ds / "imagesTr").iterdir())) == 3 * 4
    lab = np.asanyarray(nib.load(ds / "labelsTr" / "Brats18_2013_2_1.nii.gz").dataobj)
    assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1} and lab.sum() == 6
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 3
    assert (ds / "groups.csv").read_text().splitlines()[0] == "case,group"

    assert (
        main(
            [
                "nnunet",
                "make-partial",
                str(ds),
                "--groups",
                str(ds / "groups.csv"),
                "--group",
                "LGG",
                "--empty-id",
                "502",
                "--missing-id",
                "503",
                "--images",
                "symlink",
                "--no-progress",
            ]
        )
        == 0
    )
    ann = json.loads((raw / "Dataset503_BraTS18WT_missingLGG" / "annotated_labels.json").read_text())
    assert ann == {"Brats18_2013_0_1": []}
    capsys.readouterr()


def test_shortened_trainer_example():
    """The docs' shortened trainer subclass defines a trainer with nnU-Net's own __init__ signature."""
    pytest.importorskip("batchgenerators", reason="needs nnU-Net's full stack (make test-nnunet)")
    import inspect

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b for b in blocks if "class nnUNetTrainerPhiDice_100epochs" in b]
    assert len(found) == 1, "docs/nnunet.md: the shortened trainer example is missing"
    namespace = {}
    exec(compile(found[0], str(DOC), "exec"), namespace)
    cls = namespace["nnUNetTrainerPhiDice_100epochs"]
    assert issubclass(cls, nnUNetTrainer)
    assert list(inspect.signature(cls.__init__).parameters) == list(
        inspect.signature(nnUNetTrainer.__init__).parameters
    )
