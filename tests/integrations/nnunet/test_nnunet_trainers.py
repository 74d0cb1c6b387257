"""The trainer classes against nnU-Net's own ``nnUNetTrainer`` (real plans written by nnU-Net's planner, real
label managers). Needs nnU-Net's full stack: runs under ``make test-nnunet``, skipped in the default suite.

* ``nnUNetTrainer._build_loss`` equals the oracle tests' replica (so those tests compare against the real thing);
* ``nnUNetTrainerPhiDice._build_loss`` matches ``nnUNetTrainer._build_loss`` on the same outputs (labels,
  regions, ignore label, batch_dice true and false, deep supervision), ``_I``/``_BI`` match nnU-Net with
  batch_dice forced, and options from the plans configuration reach the loss;
* checkpoints keep the options and the measured ε, and a continued run with other options is refused;
* the loss levels are compiled exactly when nnU-Net's ``_do_i_compile`` compiles its ``loss.dc``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H

pytestmark = H.requires_full_nnunet

CONFIGS = ["2d", "3d_fullres"]  # batch_dice True / False in the planner's output


@pytest.fixture
def env(tmp_path, monkeypatch):
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / key).mkdir()
        monkeypatch.setenv(key, str(tmp_path / key))
    monkeypatch.setenv("nnUNet_compile", "f")
    return tmp_path


def make_trainer(cls, labels: dict, configuration: str, *, phidice=None, batch_dice=None, name=None):
    plans = copy.deepcopy(H.load_plans())
    if phidice is not None:
        plans["configurations"][configuration]["phidice"] = phidice
    if batch_dice is not None:
        plans["configurations"][configuration]["batch_dice"] = batch_dice
    plans["continue_training"] = False
    return cls(plans, configuration, 0, H.dataset_json(labels), device=torch.device("cpu"))


def trainer_case(trainer, seed=0):
    """Outputs/targets shaped as the configuration's network gives them (deep supervision on)."""
    from phidice.integrations.nnunet.task import NNUNetTask

    task = NNUNetTask.from_label_manager(trainer.label_manager, batch_dice=trainer.configuration_manager.batch_dice)
    levels = len(trainer._get_deep_supervision_scales())
    patch = tuple(trainer.configuration_manager.patch_size)
    return H.make_case(task, B=trainer.configuration_manager.batch_size, shape=patch, levels=levels, seed=seed)


def _stock_cls():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    return nnUNetTrainer


@pytest.mark.parametrize("configuration", CONFIGS)
@pytest.mark.parametrize("labels", list(H.LABEL_DICTS))
def test_replica_is_nnunet_build_loss(env, labels, configuration):
    from phidice.integrations.nnunet.task import NNUNetTask

    stock = make_trainer(_stock_cls(), H.LABEL_DICTS[labels], configuration)
    real = stock._build_loss()
    task = NNUNetTask.from_label_manager(stock.label_manager, batch_dice=stock.configuration_manager.batch_dice)
    levels = len(stock._get_deep_supervision_scales())
    replica = H.stock_build_loss(task, ds_levels=levels)
    assert type(real) is type(replica) and type(real.loss) is type(replica.loss)
    np.testing.assert_array_equal(np.asarray(real.weight_factors), np.asarray(replica.weight_factors))
    outputs, targets = trainer_case(stock, seed=1)
    assert float(real(outputs, targets).detach()) == float(replica(outputs, targets).detach())


@pytest.mark.parametrize("labels", list(H.LABEL_DICTS))
def test_task_from_label_manager_equals_dataset_json(env, labels):
    from phidice.integrations.nnunet.task import NNUNetTask

    t = make_trainer(_stock_cls(), H.LABEL_DICTS[labels], "2d")
    a = NNUNetTask.from_label_manager(t.label_manager, batch_dice=True, label_dict=H.LABEL_DICTS[labels])
    b = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=True)
    assert a == b
    assert a.num_channels == t.label_manager.num_segmentation_heads


@pytest.mark.parametrize("configuration", CONFIGS)
@pytest.mark.parametrize("labels", list(H.LABEL_DICTS))
def test_phidice_trainer_loss_matches_nnunet_trainer(env, labels, configuration):
    from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice

    ours_t = make_trainer(nnUNetTrainerPhiDice, H.LABEL_DICTS[labels], configuration)
    stock_t = make_trainer(_stock_cls(), H.LABEL_DICTS[labels], configuration)
    ours, stock = ours_t._build_loss(), stock_t._build_loss()
    assert ours.weights == tuple(stock.weight_factors)
    assert ours.options.phi == ("BI" if stock_t.configuration_manager.batch_dice else "I")
    outputs, targets = trainer_case(stock_t, seed=2)
    H.assert_matches_stock(ours, stock, outputs, targets, offset=ours.dice_offset)


@pytest.mark.parametrize(
    "cls_name,configuration,forced",
    [("nnUNetTrainerPhiDice_I", "2d", False), ("nnUNetTrainerPhiDice_BI", "3d_fullres", True)],
)
def test_fixed_phi_trainers_match_nnunet_with_that_batch_dice(env, cls_name, configuration, forced):
    import phidice.integrations.nnunet.training as training

    ours = make_trainer(getattr(training, cls_name), H.LABELS_IGNORE, configuration)._build_loss()
    stock_t = make_trainer(_stock_cls(), H.LABELS_IGNORE, configuration, batch_dice=forced)
    outputs, targets = trainer_case(stock_t, seed=3)
    H.assert_matches_stock(ours, stock_t._build_loss(), outputs, targets, offset=ours.dice_offset)


def _compiled(module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


@pytest.mark.parametrize("setting", ["1", "t", "f", None])
@pytest.mark.parametrize("labels", ["labels", "regions"])
def test_loss_levels_compiled_exactly_when_nnunet_compiles_its_dc(env, monkeypatch, labels, setting):
    """nnU-Net's ``_do_i_compile`` decides for both trainers: on the CPU it says no whatever nnUNet_compile is
    (nnU-Net's rule); with that rule lifted (as on a GPU), nnUNet_compile unset/true compiles nnU-Net's
    ``loss.dc`` and every level of the phidice loss, and false compiles neither."""
    from torch._dynamo.eval_frame import OptimizedModule

    from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice

    if setting is None:
        monkeypatch.delenv("nnUNet_compile", raising=False)
    else:
        monkeypatch.setenv("nnUNet_compile", setting)
    on_cpu = make_trainer(nnUNetTrainerPhiDice, H.LABEL_DICTS[labels], "3d_fullres")
    assert on_cpu._do_i_compile() is False and on_cpu._build_loss().compiled is False
    stock_cpu = make_trainer(_stock_cls(), H.LABEL_DICTS[labels], "3d_fullres")
    assert not isinstance(stock_cpu._build_loss().loss.dc, OptimizedModule)

    def rule(self):  # nnU-Net's rule without its device and OS exclusions
        import os

        return os.environ.get("nnUNet_compile", "true").lower() in ("true", "1", "t")

    monkeypatch.setattr(_stock_cls(), "_do_i_compile", rule)
    expected = setting in (None, "1", "t")
    stock = make_trainer(_stock_cls(), H.LABEL_DICTS[labels], "3d_fullres")._build_loss()
    assert isinstance(stock.loss.dc, OptimizedModule) is expected
    ours = make_trainer(nnUNetTrainerPhiDice, H.LABEL_DICTS[labels], "3d_fullres")._build_loss()
    assert ours.compiled is expected and len(ours.levels) == len(stock.weight_factors)
    assert [_compiled(level) for level in ours.levels] == [expected] * len(ours.levels)
    assert ours.weights == tuple(stock.weight_factors)  # nnU-Net's compiled-run weights (lowest level 0)
    assert ("torch.compile'd" in ours.describe()) is expected


def test_plans_options_reach_the_loss_and_bad_ones_name_the_plans_file(env):
    from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice, nnUNetTrainerPhiDice_BI

    t = make_trainer(
        nnUNetTrainerPhiDice, H.LABELS, "3d_fullres", phidice={"phi": "BCI", "eps_empty": 50.0, "lambda_ce": 0}
    )
    loss = t._build_loss()
    assert (loss.options.phi, loss.options.lambda_ce) == ("BCI", 0.0)
    assert type(loss.levels[0]).__name__ == "DiceLoss"
    with pytest.raises(ValueError, match=r"nnUNetPlans\.json', configuration '3d_fullres'.*'phi'"):
        make_trainer(nnUNetTrainerPhiDice, H.LABELS, "3d_fullres", phidice={"phi": "IB"})
    with pytest.raises(ValueError, match="nnUNetTrainerPhiDice_BI fixes phi='BI'"):
        make_trainer(nnUNetTrainerPhiDice_BI, H.LABELS, "3d_fullres", phidice={"phi": "I"})
    with pytest.raises(ValueError, match="unknown phidice option"):
        make_trainer(nnUNetTrainerPhiDice, H.LABELS, "2d", phidice={"epsilon": 1})


def test_marginal_trainer_refuses_regions(env, tmp_path):
    from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Marginal

    with pytest.raises(ValueError, match="use nnUNetTrainerPhiDice_Leaf"):
        make_trainer(nnUNetTrainerPhiDice_Marginal, H.REGIONS, "2d")


# ----------------------------------------------------------------------------------------------- checkpoints
def _fake_preprocessed(env, trainer, cases=("case_000", "case_001")):
    """Enough of a preprocessed folder for initialize(): nnU-Net infers its dataset class from file endings."""
    folder = (
        env / "nnUNet_preprocessed" / trainer.plans_manager.dataset_name / trainer.configuration_manager.data_identifier
    )
    folder.mkdir(parents=True, exist_ok=True)
    for c in cases:
        (folder / f"{c}.b2nd").write_bytes(b"")
        (folder / f"{c}.pkl").write_bytes(b"")
    return folder


def test_checkpoint_keeps_measured_eps_and_refuses_other_options(env):
    from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice

    t = make_trainer(nnUNetTrainerPhiDice, H.LABELS, "2d", phidice={"eps": "auto", "eps_batches": 3})
    _fake_preprocessed(env, t)
    t.initialize()
    assert t.loss.pending
    t.phidice_eps_levels = [(0.0, 120.5, 20.25), (0.0, 30.0, 5.0)]  # as on_train_start would measure them
    t.loss = t._build_loss()
    ckpt = env / "ckpt.pth"
    t.save_checkpoint(str(ckpt))
    rec = torch.load(ckpt, weights_only=False)["init_args"]["phidice"]
    assert rec["eps_measured"] == [[0.0, 120.5, 20.25], [0.0, 30.0, 5.0]]
    assert rec["options"]["eps"] == "auto" and rec["phidice_version"]

    same = make_trainer(nnUNetTrainerPhiDice, H.LABELS, "2d", phidice={"eps": "auto", "eps_batches": 3})
    same.load_checkpoint(str(ckpt))
    assert not same.loss.pending and same.loss.eps_levels == [(0.0, 120.5, 20.25), (0.0, 30.0, 5.0)]

    other = make_trainer(nnUNetTrainerPhiDice, H.LABELS, "2d", phidice={"eps": "auto", "phi": "I"})
    with pytest.raises(ValueError, match="was trained with phidice options"):
        other.load_checkpoint(str(ckpt))


def test_missing_label_trainer_reads_annotations_and_names_bad_entries(env):
    import json

    from phidice.integrations.nnunet.training import nnUNetTrainerPhiDice_Leaf

    t = make_trainer(nnUNetTrainerPhiDice_Leaf, H.LABELS, "2d")
    _fake_preprocessed(env, t)
    with pytest.raises(FileNotFoundError, match="annotated_labels.json"):
        t.initialize()
    raw = env / "nnUNet_raw" / t.plans_manager.dataset_name
    raw.mkdir(parents=True)
    (raw / "annotated_labels.json").write_text(json.dumps({"case_001": ["blob"], "case_999": []}))
    t = make_trainer(nnUNetTrainerPhiDice_Leaf, H.LABELS, "2d")
    with pytest.raises(ValueError, match=r"annotated_labels.json: 1 case\(s\) not in the dataset: 'case_999'"):
        t.initialize()
    (raw / "annotated_labels.json").write_text(json.dumps({"case_001": [7]}))
    t = make_trainer(nnUNetTrainerPhiDice_Leaf, H.LABELS, "2d")
    with pytest.raises(ValueError, match=r"annotated_labels.json, case 'case_001': label 7 is not in dataset.json"):
        t.initialize()
    (raw / "annotated_labels.json").write_text(json.dumps({"case_001": ["blob"]}))
    t = make_trainer(nnUNetTrainerPhiDice_Leaf, H.LABELS, "2d")
    t.initialize()
    rows = t.phidice_annotations.rows(["case_000", "case_001"], t.phidice_task)
    assert rows.tolist() == [[True, True, True], [True, True, False]]
