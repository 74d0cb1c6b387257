"""``phidice nnunet merge``: labels united by name, label maps rewritten, provenance round trip, every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("nnunetv2")

from _pool_data import AFFINE, tree_hashes, two_sources, write_source

from phidice.cli.main import main
from phidice.integrations.nnunet import merge_datasets
from phidice.integrations.nnunet.annotations import read_annotations
from phidice.integrations.nnunet.task import NNUNetTask
from phidice.missing.raw_dataset import sha256_file


@pytest.fixture
def raw(tmp_path, monkeypatch):
    root = tmp_path / "raw"
    root.mkdir()
    monkeypatch.setenv("nnUNet_raw", str(root))
    return root


def _merge_cli(*args) -> int:
    return main(["nnunet", "merge", *map(str, args), "--no-progress"])


def _datasets(root: Path) -> list:
    return sorted(p.name for p in root.iterdir())


def test_merge_unites_labels_and_round_trips(raw, capsys):
    a, b = two_sources(raw)
    before = {p: tree_hashes(p) for p in (a, b)}
    assert _merge_cli("701", "Dataset702_Kidney", "--id", 800, "--name", "Pool", "-j", 2) == 0
    out = raw / "Dataset800_Pool"
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "Liver": 1, "spleen": 2, "kidney_left": 3, "kidney_right": 4}
    assert dj["numTraining"] == 5 and dj["channel_names"] == {"0": "CT"}
    assert "| 3 | kidney_left | — | kidney_left (2) |" in capsys.readouterr().out
    # colliding case_001 is prefixed in both sources, the others keep their ids
    cases = sorted(p.name[:-7] for p in (out / "labelsTr").iterdir())
    assert cases == ["D701__case_001", "D702__case_001", "case_000", "case_002", "case_003"]
    prov = json.loads((out / "merge_provenance.json").read_text())
    maps = {s["key"]: s["value_map"] for s in prov["mapping"]["sources"]}
    for merged, rec in prov["cases"].items():
        assert merged.split("__", 1)[-1] == rec["case"]
        src = raw / rec["source"]
        for rel, f in rec["files"].items():
            assert sha256_file(src / f["source"]) == f["sha256"]
            new, old = nib.load(str(out / rel)), nib.load(str(src / f["source"]))
            np.testing.assert_array_equal(new.affine, old.affine)
            assert new.get_data_dtype() == old.get_data_dtype() and new.header.get_zooms() == old.header.get_zooms()
            if rel.startswith("labelsTr"):
                lut = np.array([maps[rec["source"]][str(v)] for v in range(len(maps[rec["source"]]))])
                np.testing.assert_array_equal(np.asarray(new.dataobj), lut[np.asarray(old.dataobj)])
            else:
                assert sha256_file(out / rel) == f["sha256"]  # images unchanged
    assert {p: tree_hashes(p) for p in (a, b)} == before  # sources untouched
    task = NNUNetTask.from_label_dict(dj["labels"])
    ann = read_annotations(out / "annotated_labels.json", task, case_ids=cases)
    assert ann.cases["case_000"] == {0, 1, 2} and ann.cases["D702__case_001"] == {0, 1, 3, 4}


def test_coarse_and_dataset_specific_labels(raw):
    two_sources(raw)
    write_source(raw, 703, "Abd", {"background": 0, "kidney": 1, "aorta": 2, "LIVER": 3}, cases=("x",), seed=3)
    mapping = raw.parent / "map.json"
    mapping.write_text(
        json.dumps(
            {
                "coarse": {"kidney": ["kidney_left", "kidney_right"]},
                "sources": {"703": {"aliases": {"aorta": "aorta_C"}}},
            }
        )
    )
    s = merge_datasets([701, 702, 703], dataset_id=801, name="Pool", labels=str(mapping), progress=False)
    assert s.plan.names == ["background", "Liver", "spleen", "kidney_left", "kidney_right", "aorta_C"]
    out = raw / "Dataset801_Pool"
    ann = json.loads((out / "annotated_labels.json").read_text())
    assert ann["x"] == ["Liver", "aorta_C"]  # the coarse kidney: its parts are not annotated in x
    src = np.asarray(nib.load(str(raw / "Dataset703_Abd/labelsTr/x.nii.gz")).dataobj)
    new = np.asarray(nib.load(str(out / "labelsTr/x.nii.gz")).dataobj)
    assert (new[src == 1] == 0).all() and (new[src == 2] == 5).all() and (new[src == 3] == 1).all()


def test_dry_run_prints_the_table_and_writes_nothing(raw, capsys):
    two_sources(raw)
    before = tree_hashes(raw)
    assert _merge_cli(701, 702, "--id", 800, "--name", "Pool", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would write" in out and "5 cases" in out and "| 4 | kidney_right |" in out
    assert tree_hashes(raw) == before and _datasets(raw) == ["Dataset701_Liver", "Dataset702_Kidney"]


def _refusal(raw, capsys, args, needle):
    before = tree_hashes(raw)
    names = _datasets(raw)
    assert _merge_cli(*args) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and needle in err and len(err.strip().splitlines()) == 1, err
    assert _datasets(raw) == names and tree_hashes(raw) == before


@pytest.mark.parametrize("case", ["channels", "ending", "region", "taken", "missing_image", "num_training"])
def test_refusals_name_dataset_and_field(raw, capsys, case):
    two_sources(raw)
    args, needle = (
        [701, 702, "--id", 800, "--name", "Pool"],
        {
            "channels": "Dataset703_T1: dataset.json 'channel_names'",
            "ending": "'file_ending'",
            "region": "is a region",
            "taken": "id 702 is taken",
            "missing_image": "imagesTr/case_000_0000.nii.gz is missing",
            "num_training": "'numTraining' is 9",
        }[case],
    )
    if case == "channels":
        write_source(raw, 703, "T1", {"background": 0, "liver": 1}, channels={"0": "T1"})
        args[1:1] = [703]
    elif case == "ending":
        write_source(raw, 703, "Nii", {"background": 0, "liver": 1}, ending=".nii")
        args[1:1] = [703]
    elif case == "region":
        write_source(raw, 703, "Brats", {"background": 0, "whole": [1, 2], "core": 2})
        args[1:1] = [703]
    elif case == "taken":
        args[3] = 702
    elif case == "missing_image":
        (raw / "Dataset701_Liver/imagesTr/case_000_0000.nii.gz").unlink()
    else:
        dj = raw / "Dataset702_Kidney/dataset.json"
        dj.write_text(json.dumps({**json.loads(dj.read_text()), "numTraining": 9}))
    _refusal(raw, capsys, args, needle)


def test_refusal_undeclared_label_value(raw, capsys):
    two_sources(raw)
    path = raw / "Dataset702_Kidney/labelsTr/case_003.nii.gz"
    lab = np.zeros((6, 5, 4), np.int16)
    lab[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(lab, AFFINE), str(path))
    _refusal(
        raw,
        capsys,
        [701, 702, "--id", 800, "--name", "Pool", "-j", 2],
        "Dataset702_Kidney: labelsTr/case_003.nii.gz holds label value(s) [7]",
    )
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool", "--dry-run"], "[7]")
    # a source whose values do not change (its maps are linked) is checked too
    nib.save(
        nib.Nifti1Image(np.where(lab == 7, 3, 0).astype(np.uint8), AFFINE),
        str(raw / "Dataset701_Liver/labelsTr/case_001.nii.gz"),
    )
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), AFFINE), str(path))
    _refusal(
        raw,
        capsys,
        [701, 702, "--id", 800, "--name", "Pool"],
        "Dataset701_Liver: labelsTr/case_001.nii.gz holds label value(s) [3]",
    )


def test_refusal_unset_raw_and_bad_map(raw, capsys, monkeypatch):
    a, b = two_sources(raw)
    bad = raw.parent / "map.json"
    bad.write_text(json.dumps({"sources": {"701": {"coarse": {"spleen": ["kidney_left", "nothing"]}}}}))
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool", "--labels", bad], "part 'nothing' is no merged")
    bad.write_text(json.dumps({"sources": {"999": {}}}))
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool", "--labels", bad], "sources ['999'] match none")
    monkeypatch.delenv("nnUNet_raw")
    _refusal(raw, capsys, [a, b, "--id", 800, "--name", "Pool"], "nnUNet_raw is not set")


def test_interrupt_leaves_nothing(raw, monkeypatch):
    """Ctrl-C while merging: the temporary folder goes, no Dataset800_* appears, sources unchanged."""
    a, b = two_sources(raw)
    before = tree_hashes(raw)
    from phidice.integrations.nnunet import merge as merge_module

    real = merge_module._merge_case
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(merge_module, "_merge_case", interrupted)
    with pytest.raises(KeyboardInterrupt):
        merge_datasets([a, b], dataset_id=800, name="Pool", progress=False)
    assert len(calls) >= 3
    assert _datasets(raw) == ["Dataset701_Liver", "Dataset702_Kidney"] and tree_hashes(raw) == before


def test_source_annotations_and_ignore_label_carry_over(raw):
    a, b = two_sources(raw)
    (b / "annotated_labels.json").write_text(json.dumps({"case_002": ["liver"], "case_003": [2, 3]}))
    write_source(raw, 703, "Ign", {"background": 0, "spleen": 1, "ignore": 2}, cases=("y",), seed=4)
    s = merge_datasets([a, b, raw / "Dataset703_Ign"], dataset_id=805, name="Pool", progress=False)
    out = raw / "Dataset805_Pool"
    ann = json.loads((out / "annotated_labels.json").read_text())
    assert ann["case_002"] == ["Liver"] and ann["case_003"] == ["kidney_left", "kidney_right"]
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"]["ignore"] == 5 == s.plan.ignore  # after background + 4 labels
    src = np.asarray(nib.load(str(raw / "Dataset703_Ign/labelsTr/y.nii.gz")).dataobj)
    new = np.asarray(nib.load(str(out / "labelsTr/y.nii.gz")).dataobj)
    assert (new[src == 2] == 5).all() and (new[src == 1] == 2).all()
    NNUNetTask.from_label_dict(dj["labels"])  # nnU-Net's rules: ignore = largest label + 1


def test_itk_formats_keep_spacing_origin_direction(raw):
    sitk = pytest.importorskip("SimpleITK")
    for ident, labels in ((711, {"background": 0, "liver": 1}), (712, {"background": 0, "kidney": 1, "liver": 2})):
        ds = raw / f"Dataset{ident}_Mha"
        (ds / "imagesTr").mkdir(parents=True)
        (ds / "labelsTr").mkdir()
        lab = np.zeros((4, 5, 6), np.uint16)
        lab[1, 1:3, :] = 1
        lab[2, 2, 2] = len(labels) - 1
        for arr, path in ((lab, ds / "labelsTr/c.mha"), (lab.astype(np.float32), ds / "imagesTr/c_0000.mha")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((0.7, 0.8, 2.5))
            img.SetOrigin((1.0, -2.0, 3.0))
            img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
            sitk.WriteImage(img, str(path))
        (ds / "dataset.json").write_text(
            json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".mha"})
        )
    merge_datasets([711, 712], dataset_id=806, name="Mha", progress=False, images="copy")
    out = raw / "Dataset806_Mha" / "labelsTr"
    for tag, ident, lut in (("D711", 711, [0, 1]), ("D712", 712, [0, 2, 1])):
        src = sitk.ReadImage(str(raw / f"Dataset{ident}_Mha/labelsTr/c.mha"))
        new = sitk.ReadImage(str(out / f"{tag}__c.mha"))
        assert new.GetSpacing() == src.GetSpacing() and new.GetOrigin() == src.GetOrigin()
        assert new.GetDirection() == src.GetDirection() and new.GetPixelID() == src.GetPixelID()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(new), np.array(lut)[sitk.GetArrayFromImage(src)])


def _rewrite(path: Path, data: np.ndarray, affine=AFFINE) -> None:
    nib.save(nib.Nifti1Image(data, affine), str(path))


@pytest.mark.parametrize("cut", ["header", "voxels", "not_gzip"])
def test_refusal_truncated_or_corrupt_label_map(raw, capsys, cut):
    """A label map cut short (in its header or in its voxels) or not a gzip file at all: one line naming the
    dataset and the file, no traceback, nothing written — in a merge and in a dry run."""
    two_sources(raw)
    label = raw / "Dataset702_Kidney/labelsTr/case_002.nii.gz"
    if cut == "voxels":  # big and random enough that the header survives the cut and the voxels do not
        lab = np.random.default_rng(0).integers(0, 4, (30, 30, 30)).astype(np.int16)
        _rewrite(label, lab)
        _rewrite(raw / "Dataset702_Kidney/imagesTr/case_002_0000.nii.gz", lab.astype(np.float32))
    data = label.read_bytes()
    cut_at = 40 if cut == "header" else len(data) - 64
    label.write_bytes(b"plain text, not an image" if cut == "not_gzip" else data[:cut_at])
    needle = "Dataset702_Kidney: labelsTr/case_002.nii.gz cannot be read as a label map ("
    for extra in ([], ["--dry-run"]):
        _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool", *extra], needle)
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool"], "expected a complete .nii.gz file")
    if cut == "voxels":
        _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool"], "EOFError")


def test_refusal_corrupt_image(raw, capsys):
    """Images are linked, not read, but their headers are (for the voxel grid): a corrupt one is named."""
    two_sources(raw)
    (raw / "Dataset701_Liver/imagesTr/case_001_0000.nii.gz").write_bytes(b"\x1f\x8b broken")
    _refusal(
        raw,
        capsys,
        [701, 702, "--id", 800, "--name", "Pool"],
        "Dataset701_Liver: imagesTr/case_001_0000.nii.gz cannot be read as an image",
    )


@pytest.mark.parametrize("what", ["shape", "spacing"])
def test_refusal_image_and_label_on_different_grids(raw, capsys, what):
    """nnU-Net refuses a case whose image and label map differ in shape or spacing: so does the merge, before
    writing anything, naming both files and both grids."""
    two_sources(raw)
    label = raw / "Dataset702_Kidney/labelsTr/case_003.nii.gz"
    lab = np.asarray(nib.load(str(label)).dataobj)
    if what == "shape":
        _rewrite(label, lab[:, :, :3])
        needle = "has shape (6, 5, 4) and spacing (2, 1.5, 3) but labelsTr/case_003.nii.gz has shape (6, 5, 3)"
    else:
        affine = AFFINE.copy()
        affine[2, 2] = 2.5
        _rewrite(label, lab, affine)
        needle = "spacing (2, 1.5, 3) but labelsTr/case_003.nii.gz has shape (6, 5, 4) and spacing (2, 1.5, 2.5)"
    for extra in ([], ["--dry-run"]):
        _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool", *extra], needle)
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool"], "Dataset702_Kidney: imagesTr/case_003_0000")


def test_refusal_non_integer_label_values(raw, capsys):
    """A float label map with a fractional (or NaN) value is refused by name; integral floats are merged."""
    two_sources(raw)
    label = raw / "Dataset702_Kidney/labelsTr/case_002.nii.gz"
    lab = np.asarray(nib.load(str(label)).dataobj).astype(np.float32)
    _rewrite(label, np.where(lab == 3, 2.5, lab).astype(np.float32))
    needle = "Dataset702_Kidney: labelsTr/case_002.nii.gz holds non-integer value(s) [2.5] (dtype float32)"
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool"], needle)
    _rewrite(label, np.where(lab == 3, np.nan, lab).astype(np.float32))
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool"], "holds non-integer value(s) [nan]")
    _rewrite(label, lab)
    merge_datasets([701, 702], dataset_id=800, name="Pool", progress=False)
    new = np.asarray(nib.load(str(raw / "Dataset800_Pool/labelsTr/case_002.nii.gz")).dataobj)
    assert new.dtype == np.float32 and set(np.unique(new[lab == 3])) == {4.0}  # kidney_right: 3 → 4


def test_refusal_missing_label_file(raw, capsys):
    two_sources(raw)
    (raw / "Dataset702_Kidney/labelsTr/case_002.nii.gz").unlink()
    _refusal(
        raw,
        capsys,
        [701, 702, "--id", 800, "--name", "Pool"],
        "Dataset702_Kidney: labelsTr/case_002.nii.gz is missing (imagesTr/ holds its images); 'numTraining' is 3",
    )


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "map.json: not valid JSON"),
        ("[1, 2]", "map.json: expected a JSON object; got list"),
        ('{"alias": {}}', "map.json: unknown key(s) ['alias']; allowed:"),
        ('{"sources": {"701": {"labels": {"liver": 1}}}}', "MAP.json 'labels' needs 'background': 0"),
        (None, "--labels: label map file not found"),
    ],
)
def test_refusal_bad_map_file(raw, capsys, content, needle):
    two_sources(raw)
    path = raw.parent / "map.json"
    if content is not None:
        path.write_text(content)
    _refusal(raw, capsys, [701, 702, "--id", 800, "--name", "Pool", "--labels", path], needle)


def _mha_sources(raw, sitk) -> None:
    for ident, labels in ((711, {"background": 0, "liver": 1}), (712, {"background": 0, "kidney": 1, "liver": 2})):
        ds = raw / f"Dataset{ident}_Mha"
        (ds / "imagesTr").mkdir(parents=True)
        (ds / "labelsTr").mkdir()
        lab = np.random.default_rng(ident).integers(0, len(labels), (12, 14, 16)).astype(np.uint16)
        for arr, path in ((lab, ds / "labelsTr/c.mha"), (lab.astype(np.float32), ds / "imagesTr/c_0000.mha")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((0.7, 0.8, 2.5))
            sitk.WriteImage(img, str(path))
        (ds / "dataset.json").write_text(
            json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".mha"})
        )


def test_itk_refusals_truncated_label_and_other_spacing(raw, capsys):
    """The SimpleITK formats are held to the same: a truncated .mha and a spacing that differs are one line."""
    sitk = pytest.importorskip("SimpleITK")
    _mha_sources(raw, sitk)
    label = raw / "Dataset712_Mha/labelsTr/c.mha"
    data = label.read_bytes()
    label.write_bytes(data[: len(data) // 2])
    _refusal(raw, capsys, [711, 712, "--id", 806, "--name", "Mha"], "Dataset712_Mha: labelsTr/c.mha cannot be read")
    label.write_bytes(data)
    image = raw / "Dataset711_Mha/imagesTr/c_0000.mha"
    img = sitk.ReadImage(str(image))
    img.SetSpacing((0.7, 0.8, 3.0))
    sitk.WriteImage(img, str(image))
    _refusal(
        raw,
        capsys,
        [711, 712, "--id", 806, "--name", "Mha"],
        "Dataset711_Mha: imagesTr/c_0000.mha has shape (16, 14, 12) and spacing (0.7, 0.8, 3) but labelsTr/c.mha "
        "has shape (16, 14, 12) and spacing (0.7, 0.8, 2.5)",
    )
