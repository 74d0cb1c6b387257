"""`phidice explain` from the command line."""

import json

import nibabel as nib
import numpy as np
import pytest

import phidice
from phidice.cli.main import main


def test_volume_json_matches_api(capsys):
    assert (
        main(["explain", "--volume", "8789", "120", "--phi", "I", "--eps", "1e-5", "--batch-size", "2", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    api = phidice.explain(phi="I", eps=1e-5, batch_size=2, volumes=[8789, 120])
    assert out["empty_g0"] == api.empty_g0 and out["nonempty_g1"] == api.nonempty_g1
    assert out["flagged"] == [True, True]


def test_labels_eps_auto_intent_and_plot(tmp_path, capsys):
    for i, n in enumerate([40, 0, 20]):
        a = np.zeros(128, np.uint8)
        a[:n] = 1
        nib.save(nib.Nifti1Image(a.reshape(8, 4, 4), np.eye(4)), str(tmp_path / f"l{i}.nii.gz"))
    png = tmp_path / "out" / "eq5.png"
    png.parent.mkdir()
    rc = main(
        [
            "explain",
            str(tmp_path / "*.nii.gz"),
            "--eps",
            "auto",
            "--batch-size",
            "1",
            "--intent",
            "empty",
            "--plot",
            str(png),
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "**Recommendation (empty)**: Φ=I, ε=20" in out  # E[Σy] = (40 + 0 + 20) / 3
    assert "| 1 | 30 |" in out and "| ok |" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["explain"], "give label files"),
        (["explain", "--volume", "10", "--eps", "auto", "3"], "--eps auto stands alone"),
        (["explain", "--volume", "10", "--plot", "/nonexistent_dir_phidice/x.png"], "does not exist"),
        (["explain", "--volume", "-3"], "volumes must be finite and > 0"),
    ],
)
def test_errors(argv, msg, capsys):
    assert main(argv) == 2
    assert msg in capsys.readouterr().err
