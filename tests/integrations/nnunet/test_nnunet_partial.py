"""``annotated_labels.json`` and ``phidice nnunet make-partial`` / ``trainers-path``."""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H
import _synthetic

from phidice.cli.main import main
from phidice.integrations.nnunet import TRAINER_NAMES
from phidice.integrations.nnunet.annotations import (
    ANNOTATION_FILE,
    find_annotation_file,
    parse_annotations,
    read_annotations,
)
from phidice.integrations.nnunet.task import NNUNetTask

TASK = NNUNetTask.from_label_dict({**H.LABELS, "ignore": 3})


# ------------------------------------------------------------------------------------------------ annotations
def test_annotations_format_names_and_defaults():
    ann = parse_annotations({"c1": [], "c2": ["spot"], "c3": [1, 2]}, TASK, case_ids=["c1", "c2", "c3", "c4"])
    assert ann.cases == {"c1": {0}, "c2": {0, 2}, "c3": {0, 1, 2}}
    assert ann.rows(["c1", "c2", "c4"], TASK).tolist() == [
        [True, False, False],
        [True, False, True],
        [True, True, True],
    ]  # c4 not listed: everything


@pytest.mark.parametrize(
    "data,match",
    [
        ([["c1", 1]], "expected a JSON object"),
        ({"c1": 1}, "case 'c1': expected a list"),
        ({"c1": [4]}, r"case 'c1': label 4 is not in dataset.json \(labels \[0, 1, 2\]\)"),
        ({"c1": [3]}, "case 'c1': label 3 is dataset.json's ignore label"),
        ({"c1": ["tumour"]}, "case 'c1': label name 'tumour' is not in dataset.json"),
        ({"c1": [1.0]}, "label values"),
        ({"c9": [1]}, r"1 case\(s\) not in the dataset: 'c9'"),
    ],
)
def test_annotation_errors_name_the_file(data, match, tmp_path):
    path = tmp_path / ANNOTATION_FILE
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as err:
        read_annotations(path, TASK, case_ids=["c1", "c2"])
    assert str(path) in str(err.value)


def test_annotation_file_lookup(tmp_path):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    with pytest.raises(FileNotFoundError, match="searched"):
        find_annotation_file("Dataset001_X", raw_root=str(raw), preprocessed_root=str(pre))
    (pre / "Dataset001_X").mkdir(parents=True)
    (pre / "Dataset001_X" / ANNOTATION_FILE).write_text('{"a": [1]}')
    assert find_annotation_file("Dataset001_X", raw_root=None, preprocessed_root=str(pre)).startswith(str(pre))
    (raw / "Dataset001_X").mkdir(parents=True)
    (raw / "Dataset001_X" / ANNOTATION_FILE).write_text('{"a": [1, 2]}')
    with pytest.raises(ValueError, match="differ"):
        find_annotation_file("Dataset001_X", raw_root=str(raw), preprocessed_root=str(pre))
    with open(raw / "Dataset001_X" / ANNOTATION_FILE, "w") as f:
        f.write('{"a":  [1]}')  # same content, other formatting
    assert find_annotation_file("Dataset001_X", raw_root=str(raw), preprocessed_root=str(pre)).startswith(str(raw))
    (raw / "Dataset001_X" / ANNOTATION_FILE).write_text('{"a": [1,')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_annotations(raw / "Dataset001_X" / ANNOTATION_FILE, TASK)


# ------------------------------------------------------------------------------------------------ make-partial
def _tree_digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def raw(tmp_path):
    return _synthetic.write_dataset(tmp_path / "raw", 601, "Synth", two_d=True, n_train=6, n_test=1, size=16)


def test_make_partial_writes_both_set_ups_and_leaves_the_source_alone(raw, capsys):
    before = _tree_digest(raw["dataset"])
    rc = main(
        [
            "nnunet",
            "make-partial",
            str(raw["dataset"]),
            "--groups",
            str(raw["groups"]),
            "--group",
            "B",
            "--labels",
            "spot",
            "--empty-id",
            "602",
            "--missing-id",
            "603",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "3 with labels replaced by background" in capsys.readouterr().out
    assert _tree_digest(raw["dataset"]) == before
    root = raw["dataset"].parent
    empty, missing = root / "Dataset602_Synth_emptyB", root / "Dataset603_Synth_missingB"
    assert not list(root.glob(".phidice-tmp-*"))
    for d in (empty, missing):
        assert sorted(p.name for p in (d / "imagesTr").iterdir()) == sorted(
            p.name for p in (raw["dataset"] / "imagesTr").iterdir()
        )
        assert json.loads((d / "dataset.json").read_text())["labels"] == H.LABELS
        assert (d / "groups.csv").read_text() == raw["groups"].read_text()
        for case, group in raw["groups_map"].items():
            src = raw["dataset"] / "labelsTr" / f"{case}.nii.gz"
            if not src.exists():
                continue  # a held-out case
            a, b = nib.load(src), nib.load(d / "labelsTr" / f"{case}.nii.gz")
            old, new = np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)
            assert new.dtype == old.dtype and np.array_equal(a.affine, b.affine)
            expected = np.where(old == 2, 0, old) if group == "B" else old
            assert np.array_equal(new, expected), case
            if group == "B":
                assert (old == 2).any()
    assert not (empty / ANNOTATION_FILE).exists()
    ann = json.loads((missing / ANNOTATION_FILE).read_text())
    assert ann == {
        c: [1]
        for c, g in sorted(raw["groups_map"].items())
        if g == "B" and (raw["dataset"] / "labelsTr" / f"{c}.nii.gz").exists()
    }
    prov = json.loads((missing / "phidice_partial.json").read_text())
    assert prov["labels_removed"] == [2] and prov["group"] == "B" and prov["set_up"] == "missing"


def test_make_partial_hardlinks_images_and_removes_every_label_by_default(raw, tmp_path):
    out = tmp_path / "derived"
    assert (
        main(
            [
                "nnunet",
                "make-partial",
                str(raw["dataset"]),
                "--groups",
                str(raw["groups"]),
                "--group",
                "A",
                "--empty-id",
                "612",
                "--missing-id",
                "613",
                "--out",
                str(out),
                "--images",
                "hardlink",
                "--no-progress",
            ]
        )
        == 0
    )
    missing = out / "Dataset613_Synth_missingA"
    img = next((missing / "imagesTr").iterdir())
    assert os.stat(img).st_ino == os.stat(raw["dataset"] / "imagesTr" / img.name).st_ino
    assert set(map(tuple, json.loads((missing / ANNOTATION_FILE).read_text()).values())) == {()}
    lab = np.asanyarray(nib.load(missing / "labelsTr" / "case_000.nii.gz").dataobj)  # group A
    assert not lab.any()


@pytest.mark.parametrize(
    "args,match",
    [
        (["--group", "C"], "no case in group 'C'"),
        (["--group", "B", "--labels", "7"], "label 7 is not in dataset.json"),
        (["--group", "B", "--labels", "0"], "label 0 is the background"),
        (["--group", "B", "--empty-id", "601"], "must differ"),
        (["--group", "B", "--empty-id", "1000"], "1..999"),
    ],
)
def test_make_partial_errors(raw, args, match, capsys):
    base = [
        "nnunet",
        "make-partial",
        str(raw["dataset"]),
        "--groups",
        str(raw["groups"]),
        "--empty-id",
        "602",
        "--missing-id",
        "603",
        "--no-progress",
    ]
    if "--empty-id" in args:
        base = base[:5] + ["--missing-id", "603", "--no-progress"]
    assert main(base + args) == 2
    assert match in capsys.readouterr().err
    assert not list(raw["dataset"].parent.glob("Dataset60[23]_*"))


def test_make_partial_refuses_taken_ids_and_ungrouped_cases(raw, capsys):
    (raw["dataset"].parent / "Dataset602_Other").mkdir()
    cmd = [
        "nnunet",
        "make-partial",
        str(raw["dataset"]),
        "--groups",
        str(raw["groups"]),
        "--group",
        "B",
        "--empty-id",
        "602",
        "--missing-id",
        "603",
        "--no-progress",
    ]
    assert main(cmd) == 2
    assert "dataset id 602 is taken" in capsys.readouterr().err
    raw["groups"].write_text("case,group\ncase_000,A\n")
    assert main(cmd[:-5] + ["--empty-id", "604", "--missing-id", "605", "--no-progress"]) == 2
    assert "training case(s) have no group: case_001" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ trainers-path
def test_trainers_path_lists_one_module_per_trainer(capsys):
    assert main(["nnunet", "trainers-path"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder.is_dir()
    for name in TRAINER_NAMES:
        module = folder / f"{name}.py"
        tree = ast.parse(module.read_text())
        imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names]
        assert imported == [name], module
