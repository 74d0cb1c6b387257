"""nnUNetTrainerPhiDice's loss against nnU-Net's stock loss, on the same outputs, in float32.

nnU-Net's loss is built from nnU-Net's own classes the way ``nnUNetTrainer._build_loss`` builds it (labels:
DC_and_CE_loss; regions: DC_and_BCE_loss; ignore label; batch_dice true/false; deep supervision with nnU-Net's
weights), phidice's with the integration's options for ``nnUNetTrainerPhiDice``. Loss values agree after
removing the constant λ_dice·Σw (1 − DSC vs −DSC) to 1e-5 relative, gradients to 1e-5 of their largest entry.
"""

from __future__ import annotations

import pytest

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H

from phidice.integrations.nnunet.loss import PhiDiceNNUNetLoss, ce_scale
from phidice.integrations.nnunet.options import resolve_options
from phidice.integrations.nnunet.task import NNUNetTask

SHAPES = {"2d": (32, 32), "3d": (8, 8, 8)}


def _ours(task, levels, *, is_ddp=False, raw=None):
    opts = resolve_options(raw, task, is_ddp=is_ddp)
    weights = None if levels is None else tuple(H.ds_weights(levels, is_ddp=is_ddp))
    return PhiDiceNNUNetLoss(opts, task, weights=weights)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("levels", [None, 3], ids=["no-ds", "ds3"])
@pytest.mark.parametrize("batch_dice", [True, False], ids=["batch_dice", "image_dice"])
@pytest.mark.parametrize("labels", list(H.LABEL_DICTS))
def test_matches_nnunet_stock_loss(labels, batch_dice, levels, dim):
    task = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=batch_dice)
    ours = _ours(task, levels)
    stock = H.stock_build_loss(task, ds_levels=levels)
    outputs, targets = H.make_case(task, B=3, shape=SHAPES[dim], levels=levels, seed=7)
    assert ours.options.phi == ("BI" if batch_dice else "I")
    H.assert_matches_stock(ours, stock, outputs, targets, offset=ours.dice_offset)


@pytest.mark.parametrize("labels", ["labels+ignore", "regions+ignore"])
def test_matches_nnunet_when_every_voxel_is_ignored(labels):
    # nnU-Net skips its CE when no voxel is left (num_fg == 0); phidice's masked mean over no voxel is 0.
    task = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=True)
    ours, stock = _ours(task, 3), H.stock_build_loss(task, ds_levels=3)
    outputs, targets = H.make_case(task, B=2, shape=(16, 16), levels=3, seed=3, all_ignored=True)
    value = ours(outputs, targets)
    assert float(value.detach()) - ours.dice_offset == pytest.approx(float(stock(outputs, targets).detach()), abs=1e-6)
    assert all(g is None or float(g.abs().max()) == 0 for g in H.grads(value, outputs))


def test_ddp_weights_follow_nnunet():
    # without torch.compile nnU-Net gives the lowest level 1e-6 under DDP (unused parameters otherwise)
    task = NNUNetTask.from_label_dict(H.LABELS, batch_dice=True)
    ours = _ours(task, 4, is_ddp=True)
    assert ours.options.sync_batch is True
    assert ours.weights[-1] > 0 and sum(ours.weights) == pytest.approx(1.0)


def test_int16_and_float_label_targets_agree():
    # nnU-Net's loader gives int16 maps; float maps holding whole numbers are read as labels too
    task = NNUNetTask.from_label_dict(H.LABELS_IGNORE, batch_dice=False)
    ours = _ours(task, None)
    out, lab = H.make_case(task, B=2, shape=(16, 16), levels=None, seed=5)
    a, b = ours(out, lab), ours(out, lab.float())
    assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-6)


def test_regions_with_ignore_need_the_bce_scaled_like_nnunet():
    # nnU-Net divides its masked BCE by the voxel count (not voxels × R); phidice's BCE is the masked mean, so
    # the trainer passes λ_CE·R. With λ_CE·1 the losses differ: the scaling is what the oracle above confirms.
    task = NNUNetTask.from_label_dict(H.REGIONS_IGNORE, batch_dice=False)
    assert ce_scale(task) == task.num_channels == 2
    assert ce_scale(NNUNetTask.from_label_dict(H.REGIONS, batch_dice=False)) == 1
    unscaled = PhiDiceNNUNetLoss(resolve_options({"lambda_ce": 1 / 2}, task), task)  # λ_CE·R = 1
    out, tgt = H.make_case(task, B=2, shape=(16, 16), levels=None, seed=4)
    with pytest.raises(AssertionError, match="loss"):
        H.assert_matches_stock(
            unscaled, H.stock_build_loss(task, ds_levels=None), out, tgt, offset=unscaled.dice_offset
        )


def test_dice_only_and_weights_from_options():
    # lambda_ce = 0 (Dice only) against nnU-Net's DC_and_CE_loss with weight_ce = 0; lambda_dice scales
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    task = NNUNetTask.from_label_dict(H.LABELS, batch_dice=True)
    ours = _ours(task, None, raw={"lambda_ce": 0, "lambda_dice": 2.0})
    stock = DC_and_CE_loss(
        {"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False},
        {},
        weight_ce=0,
        weight_dice=2.0,
        dice_class=MemoryEfficientSoftDiceLoss,
    )
    out, lab = H.make_case(task, B=2, shape=(16, 16), levels=None, seed=11)
    H.assert_matches_stock(ours, stock, out, lab, offset=ours.dice_offset)
    assert ours.dice_offset == 2.0


@H.requires_full_nnunet  # ~10 s of tracing per case: in `make test-nnunet`, beside the trainers' compile test
@pytest.mark.parametrize("labels", ["labels+ignore", "regions"])
def test_compiled_levels_equal_eager(labels):
    """``compile_levels`` (what the trainers do where nnU-Net compiles ``loss.dc``): the same loss and
    gradients as the eager loss, still nnU-Net's (aot_eager: the traced graph, no C++ compiler needed)."""
    task = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=True)
    eager, compiled = _ours(task, 3), _ours(task, 3).compile_levels(backend="aot_eager")
    assert compiled.compiled and all(level._compiled_call_impl is not None for level in compiled.levels)
    outputs, targets = H.make_case(task, B=2, shape=(8, 8, 8), levels=3, seed=5)
    H.assert_matches_stock(compiled, eager, outputs, targets, offset=0.0)
    H.assert_matches_stock(compiled, H.stock_build_loss(task, ds_levels=3), outputs, targets, eager.dice_offset)
