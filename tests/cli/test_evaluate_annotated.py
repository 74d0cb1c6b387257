"""``phidice evaluate --annotated``: each case scored only on the labels it annotates, rows per source.

Four cases, classes 1 and 2. Cases a, b (source SrcA) annotate both; c, d (SrcB) annotate class 1 only, and the
prediction puts 3 voxels of class 2 in c — a miss if class 2 were taken as annotated there (DSC 0 with
``--empty zero``), left out here.

    case  class 1: I P Y  DSC    class 2: I P Y  DSC
    a            8 10 10  0.8            5 6 5   10/11
    b            4 4  4   1.0            3 3 6   6/9
    c            6 6  6   1.0            (0 3 0, not annotated)
    d            0 0  3   0.0            (not annotated)
"""

import csv
import json
import math

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from phidice.cli.main import main

SHAPE = (4, 5, 6)


def _vol(**ranges):
    v = np.zeros(int(np.prod(SHAPE)), dtype=np.int16)
    for label, sl in ranges.items():
        v[sl] = int(label[1:])
    return v.reshape(SHAPE)


CASES = {
    "a": (_vol(c1=slice(0, 10), c2=slice(20, 25)), _vol(c1=slice(2, 12), c2=slice(20, 26))),
    "b": (_vol(c1=slice(0, 4), c2=slice(30, 36)), _vol(c1=slice(0, 4), c2=slice(30, 33))),
    "c": (_vol(c1=slice(50, 56)), _vol(c1=slice(50, 56), c2=slice(70, 73))),
    "d": (_vol(c1=slice(0, 3)), _vol()),
}


@pytest.fixture()
def pool(tmp_path):
    gt, pred, ds = tmp_path / "gt", tmp_path / "pred", tmp_path / "Dataset800_Pool"
    for d in (gt, pred, ds):
        d.mkdir()
    for name, (ref, prd) in CASES.items():
        nib.save(nib.Nifti1Image(ref, np.eye(4)), str(gt / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(prd, np.eye(4)), str(pred / f"{name}.nii.gz"))
    (ds / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumor": 2}}))
    ann = ds / "annotated_labels.json"
    ann.write_text(json.dumps({"a": ["liver", "tumor"], "b": [1, 2], "c": ["liver"], "d": [1]}))
    (ds / "merge_provenance.json").write_text(
        json.dumps({"cases": {k: {"source": "SrcA" if k in "ab" else "SrcB", "case": k} for k in CASES}})
    )
    return tmp_path, pred, gt, ann


def _run(*args):
    return main(["evaluate", *map(str, args), "--no-progress", "--n-resamples", "200"])


def test_unannotated_labels_are_left_out(pool):
    tmp, pred, gt, ann = pool
    assert _run("--pred", pred, "--gt", gt, "--empty", "zero", "--out", tmp / "naive") == 0
    assert _run("--pred", pred, "--gt", gt, "--empty", "zero", "--annotated", ann, "--out", tmp / "pool") == 0
    with open(tmp / "pool" / "per_case.csv", newline="") as f:
        rows = {(r["case"], int(r["class"])): r for r in csv.DictReader(f)}
    assert rows[("c", 2)]["annotated"] == "0" and math.isnan(float(rows[("c", 2)]["DSC"]))
    assert math.isnan(float(rows[("c", 2)]["dV_ml"]))
    assert float(rows[("a", 2)]["DSC"]) == pytest.approx(10 / 11) and rows[("d", 1)]["annotated"] == "1"
    summary = (tmp / "pool" / "summary.md").read_text()
    table = {
        tuple(c.strip() for c in line.strip("|").split("|")[:4])
        for line in summary.splitlines()
        if line.startswith("| ") and not line.startswith("| class")
    }
    expected_c2 = f"{(10 / 11 + 6 / 9) / 2:.3f}"
    assert ("2", "all", "2", f"{expected_c2} ± {np.std([10 / 11, 6 / 9], ddof=1):.3f}") in table
    assert ("2", "SrcA", "2") in {t[:3] for t in table} and ("1", "SrcB", "2") in {t[:3] for t in table}
    assert not any(t[0] == "2" and t[1] == "SrcB" for t in table)  # SrcB annotates no class 2: no row
    assert "cases scored" in summary
    naive = (tmp / "naive" / "summary.md").read_text()
    assert f"| 2 | all | 4 | {(10 / 11 + 6 / 9) / 4:.3f}" in naive  # c and d count as misses/zeros without it


def test_annotated_errors(pool, capsys):
    tmp, pred, gt, ann = pool
    ann.write_text(json.dumps({"a": ["spleen"]}))
    assert _run("--pred", pred, "--gt", gt, "--annotated", ann, "--out", tmp / "x") == 2
    err = capsys.readouterr().err
    assert "label name 'spleen' is not in dataset.json" in err and "Traceback" not in err
    assert _run("--pred", pred, "--gt", gt, "--annotated", tmp / "nope.json", "--out", tmp / "x") == 2
    assert "annotation file not found" in capsys.readouterr().err
