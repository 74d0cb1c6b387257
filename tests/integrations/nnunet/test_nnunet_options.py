"""The ``"phidice"`` entry of a plans configuration: defaults, fixed options, errors, and ``add-config``."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H

from phidice.cli.main import main
from phidice.integrations.nnunet.loss import checked_options
from phidice.integrations.nnunet.options import resolve_options
from phidice.integrations.nnunet.task import NNUNetTask

LABELS = NNUNetTask.from_label_dict(H.LABELS, batch_dice=True)
REGIONS = NNUNetTask.from_label_dict(H.REGIONS, batch_dice=False)
SRC = "plans file 'p.json', configuration '2d'"


def test_defaults_are_nnunets_loss():
    o = resolve_options(None, LABELS)
    assert (o.phi, o.eps, o.lambda_dice, o.lambda_ce, o.include_background, o.sync_batch) == (
        "BI",
        1e-5,
        1.0,
        1.0,
        False,
        False,
    )
    assert resolve_options({}, NNUNetTask.from_label_dict(H.LABELS, batch_dice=False)).phi == "I"
    assert resolve_options({}, REGIONS).include_background is True
    assert resolve_options({}, LABELS, is_ddp=True).sync_batch is True
    assert resolve_options({"sync_batch": False}, LABELS, is_ddp=True).sync_batch is False


def test_options_pass_through_and_are_recorded():
    o = resolve_options(
        {
            "phi": "bci",
            "eps": [1, 2, 3],
            "eps_empty": 8789,
            "empty": "skip",
            "lambda_ce": 0.5,
            "ce_weight": [1, 2, 3],
            "label_smoothing": 0.1,
        },
        LABELS,
    )
    assert o.phi == "BCI" and o.eps == (1.0, 2.0, 3.0)
    assert o.dice_kwargs == {"eps_empty": 8789.0, "empty": "skip"}
    assert o.ce_kwargs == {"ce_weight": (1, 2, 3), "label_smoothing": 0.1}
    rec = o.configured()
    assert rec["eps"] == [1.0, 2.0, 3.0] and rec["ce_weight"] == [1, 2, 3]
    json.dumps(rec)  # JSON-able, for the log and the checkpoint


@pytest.mark.parametrize(
    "raw,match",
    [
        ({"phi": "IB"}, "'phi' must be one of"),
        ({"epsilon": 1}, r"unknown phidice option\(s\) \['epsilon'\]"),
        ({"eps": "big"}, "'eps' must be a number"),
        ({"eps": -1}, "invalid phidice options: eps must be finite and ≥ 0"),  # checked by DiceConfig
        ({"lambda_ce": -1}, "invalid phidice options: lambda_ce must be a number ≥ 0"),  # by CEConfig
        ({"activation": "sigmoid"}, r"unknown phidice option\(s\) \['activation'\]"),  # the task decides it
        ({"eps": [1.0, 2.0, 3.0, 4.0, 5.0]}, "invalid phidice options"),  # the core's per-class check
        ({"lambda_dice": 0, "lambda_ce": 0}, "no loss left"),
        ({"include_background": "yes"}, "true or false"),
        ({"eps_batches": 0}, "'eps_batches' must be an integer"),
        ({"lambda_ce": 0, "ce_weight": [1, 1, 1]}, "lambda_ce is 0"),
        ({"weighting": "generalized"}, "invalid phidice options"),  # the core: needs a Φ summing over classes
        ({"eps_empty": "auto"}, "'eps_empty' must be a number"),
    ],
)
def test_bad_options_name_the_plans_file(raw, match):
    with pytest.raises(ValueError, match=match) as err:
        checked_options(raw, LABELS, source=SRC)  # the options, then the loss built from them
    assert str(err.value).startswith(SRC)


def test_the_keys_are_the_fields_of_the_configs():
    import dataclasses

    from phidice.core.config import CEConfig, DiceConfig
    from phidice.integrations.nnunet import options

    fields = {f.name for f in dataclasses.fields(DiceConfig)} | {f.name for f in dataclasses.fields(CEConfig)}
    assert set(options.ALLOWED_KEYS) == (fields - set(options.TRAINER_KEYS)) | {"eps_batches", "coarse_empty"}
    assert len(options.ALLOWED_KEYS) == len(set(options.ALLOWED_KEYS))
    o = resolve_options({"validate_args": False, "fused": "auto", "ce_weight": [1, 2, 3]}, LABELS)
    assert o.dice_kwargs == {"validate_args": False, "fused": "auto"}
    assert o.ce_kwargs == {"ce_weight": (1.0, 2.0, 3.0)}


def test_entry_must_be_an_object():
    with pytest.raises(ValueError, match="must be a JSON object"):
        resolve_options(["BI"], LABELS, source=SRC)


def test_fixed_options_cannot_be_changed_by_the_plans():
    fixed = {"phi": "I", "eps": "auto"}
    o = resolve_options({"phi": "i", "eps_batches": 5}, LABELS, fixed=fixed, trainer="nnUNetTrainerPhiDice_Ieps")
    assert (o.phi, o.eps, o.eps_batches) == ("I", "auto", 5)
    with pytest.raises(ValueError, match="nnUNetTrainerPhiDice_Ieps fixes eps='auto'"):
        resolve_options({"eps": 1e-5}, LABELS, fixed=fixed, trainer="nnUNetTrainerPhiDice_Ieps")


def test_region_and_missing_label_rules():
    with pytest.raises(ValueError, match="include_background must be true"):
        resolve_options({"include_background": False}, REGIONS)
    with pytest.raises(ValueError, match="use nnUNetTrainerPhiDice_Leaf"):
        resolve_options({}, REGIONS, missing="marginal")
    smoothed = resolve_options({"label_smoothing": 0.1}, LABELS, missing="leaf")  # the marginal CE smooths too
    assert smoothed.ce_kwargs == {"label_smoothing": 0.1}
    assert resolve_options({}, REGIONS, missing="leaf").missing == "leaf"


# ------------------------------------------------------------------------------------------------ add-config
@pytest.fixture
def preprocessed(tmp_path):
    folder = tmp_path / "Dataset611_Synth3D"
    folder.mkdir()
    shutil.copy(H.PLANS_FILE, folder / "nnUNetPlans.json")
    (folder / "dataset.json").write_text(json.dumps(H.dataset_json(H.LABELS)))
    return folder


def test_add_config_writes_an_inheriting_configuration(preprocessed, capsys):
    rc = main(
        [
            "nnunet",
            "add-config",
            str(preprocessed),
            "-c",
            "3d_fullres",
            "--name",
            "3d_BI_b4",
            "--batch-size",
            "4",
            "--phi",
            "BI",
            "--eps-empty",
            "8789",
            "--lambda-ce",
            "0",
            "--set",
            'empty="skip"',
        ]
    )
    assert rc == 0
    assert "nnUNetv2_train Dataset611_Synth3D 3d_BI_b4 FOLD -tr nnUNetTrainerPhiDice" in capsys.readouterr().out
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    entry = plans["configurations"]["3d_BI_b4"]
    assert entry == {
        "inherits_from": "3d_fullres",
        "batch_size": 4,
        "phidice": {"phi": "BI", "eps_empty": 8789.0, "lambda_ce": 0.0, "empty": "skip"},
    }
    assert "3d_fullres" in plans["configurations"] and "2d" in plans["configurations"]  # nothing else changed


def test_add_config_checks_before_writing(preprocessed, capsys):
    before = (preprocessed / "nnUNetPlans.json").read_bytes()
    assert main(["nnunet", "add-config", str(preprocessed), "-c", "3d_fullres", "--name", "x", "--phi", "IB"]) == 2
    assert "'phi' must be one of" in capsys.readouterr().err
    assert main(["nnunet", "add-config", str(preprocessed), "-c", "3d_fullres", "--name", "2d"]) == 2
    assert "exists (use --force" in capsys.readouterr().err
    assert main(["nnunet", "add-config", str(preprocessed), "-c", "4d", "--name", "y"]) == 2
    assert "no configuration '4d'" in capsys.readouterr().err
    assert main(["nnunet", "add-config", str(preprocessed), "-c", "2d", "--name", "y", "--set", "empty=skip"]) == 2
    assert "is not JSON" in capsys.readouterr().err
    assert (preprocessed / "nnUNetPlans.json").read_bytes() == before


def test_add_config_resolves_datasets_by_id(preprocessed, monkeypatch, capsys):
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed.parent))
    assert main(["nnunet", "add-config", "611", "-c", "2d", "--name", "2d_eps", "--eps", "auto"]) == 0
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["2d_eps"]["phidice"] == {"eps": "auto"}
    assert main(["nnunet", "add-config", "612", "-c", "2d", "--name", "z"]) == 2
    assert "0 matching folder(s)" in capsys.readouterr().err
