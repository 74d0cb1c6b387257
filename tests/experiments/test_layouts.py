"""Own-data layouts (BraTS, ACDC, plain) on tiny folders written here, and the CLI on one of them."""

import json
import os

import nibabel as nib
import numpy as np
import pytest

from phidice.cli.main import main
from phidice.experiments.layouts import detect_layout, load_folder, split_by_case


def _vol(rng, shape=(20, 16, 4), classes=(1,), r=4):
    img = rng.normal(0, 0.1, shape).astype(np.float32) + 1
    lab = np.zeros(shape, np.int16)
    c = np.array(shape[:2]) // 2 + rng.integers(-2, 3, 2)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy - c[0], xx - c[1])
    for z in range(1, shape[2]):  # slice 0 stays empty
        for k, cls in enumerate(classes):
            lab[..., z][(d < r - k) & (d >= r - k - 1 if k < len(classes) - 1 else True)] = cls
        img[..., z] += 2 * (lab[..., z] > 0)
    return img, lab


def _save(path, arr, zooms=(1.5, 1.5, 3.0)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = nib.Nifti1Image(arr, np.eye(4))
    im.header.set_zooms(zooms)
    nib.save(im, path)


@pytest.fixture
def brats(tmp_path):
    rng = np.random.default_rng(0)
    for grade, n in (("HGG", 3), ("LGG", 2)):
        for i in range(n):
            case = f"Brats18_{grade}_{i}"
            img, lab = _vol(rng, classes=(4, 1, 2) if grade == "HGG" else (2,))
            _save(str(tmp_path / grade / case / f"{case}_flair.nii.gz"), img)
            _save(str(tmp_path / grade / case / f"{case}_seg.nii.gz"), lab)
    return str(tmp_path)


@pytest.fixture
def acdc(tmp_path):
    rng = np.random.default_rng(1)
    for p in range(1, 5):
        case = f"patient{p:03d}"
        (tmp_path / case).mkdir()
        (tmp_path / case / "Info.cfg").write_text("ED: 1\nES: 7\nGroup: NOR\n")
        for frame in (1, 7):
            img, lab = _vol(rng, classes=(3, 2, 1), r=5)
            _save(str(tmp_path / case / f"{case}_frame{frame:02d}.nii.gz"), img)
            _save(str(tmp_path / case / f"{case}_frame{frame:02d}_gt.nii.gz"), lab)
    return str(tmp_path)


@pytest.fixture
def plain(tmp_path):
    rng = np.random.default_rng(2)
    lines = ["name,group"]
    for i in range(6):
        img, lab = _vol(rng, shape=(16, 16, 2), classes=(1,))
        img, lab = img[..., 1], lab[..., 1]  # 2D images
        _save(str(tmp_path / "images" / f"case{i}.nii.gz"), img, (2.0, 2.0))
        _save(str(tmp_path / "labels" / f"case{i}.nii.gz"), lab, (2.0, 2.0))
        lines.append(f"case{i},{'a' if i < 4 else 'b'}")
    (tmp_path / "groups.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path)


def test_brats_layout(brats):
    assert detect_layout(brats) == "brats"
    ds = load_folder(brats, size=16, slices_per_case=2)
    assert ds.num_classes == 1 and ds.missing == {"lgg": (1,)}
    assert ds.images.shape == (10, 1, 16, 16) and set(np.unique(ds.labels)) == {0, 1}  # whole tumour = seg > 0
    assert (ds.groups == "hgg").sum() == 6 and (ds.labels.sum((1, 2)) > 0).all()
    assert ds.spacing[2] == pytest.approx(3.0) and ds.spacing[0] == pytest.approx(1.5 * 20 / 16)
    train, val = split_by_case(ds, 0.4, seed=0)
    assert not set(train.names) & set(val.names) and set(val.groups) == {"hgg", "lgg"}


def test_acdc_layout(acdc):
    assert detect_layout(acdc) == "acdc"
    ds = load_folder(acdc, size=16, slices_per_case=1)
    assert ds.num_classes == 4 and ds.missing == {"es": (2,)} and ds.class_names == ("RV", "MYO", "LV")
    assert sorted(ds.groups.tolist()) == ["ed"] * 4 + ["es"] * 4
    assert set(np.unique(ds.labels)) == {0, 1, 2, 3}
    assert not (ds.partial().labels[ds.groups == "es"] == 2).any()


def test_plain_layout(plain):
    assert detect_layout(plain) == "plain"
    ds = load_folder(plain, size=16)
    assert ds.num_classes == 1 and ds.missing == {"b": (1,)}  # the smaller group loses its labels
    assert len(ds) == 6 and ds.spacing[:2] == pytest.approx((2.0, 2.0))
    assert load_folder(plain, size=16, missing_group="a").missing == {"a": (1,)}
    with pytest.raises(ValueError, match="missing_group"):
        load_folder(plain, size=16, missing_group="c")


def test_layout_errors(tmp_path, plain):
    with pytest.raises(FileNotFoundError):
        load_folder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="layout"):
        load_folder(str(tmp_path / "empty"))
    os.remove(os.path.join(plain, "labels", "case0.nii.gz"))
    with pytest.raises(FileNotFoundError, match="case0"):
        load_folder(plain, size=16)


def test_cli_reproduce_on_own_data(brats, tmp_path, capsys):
    out = str(tmp_path / "run")
    rc = main(
        [
            "reproduce",
            "--smoke",
            "--data",
            brats,
            "--out",
            out,
            "--batch-sizes",
            "1,2",
            "--iterations",
            "2",
            "--slices-per-case",
            "2",
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert f"report: {os.path.join(out, 'report.md')}" in capsys.readouterr().out
    res = json.load(open(os.path.join(out, "results.json")))
    assert {(r["config"], r["batch_size"]) for r in res["rows"]} == {
        (c, b) for c in ("I", "BI", "I_eps") for b in (1, 2)
    }
    assert res["meta"]["iterations"] == 2


def test_cli_errors(tmp_path, capsys):
    assert (
        main(
            ["reproduce", "--smoke", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress"]
        )
        == 2
    )
    assert "data folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--batch-sizes", "1,x"])
    assert main(["reproduce", "--smoke", "--slices-per-case", "0", "--out", str(tmp_path / "o")]) == 2
