"""The missing-label trainers' loss: what a case that does not annotate a class teaches about that class.

* Region-based (sigmoid) training: the unannotated region's logits of that case get exactly zero gradient from
  the whole loss (leaf Dice + BCE over the annotated channels, deep supervision, ignore mask).
* Label (softmax) training: the leaf Dice drops the (case, class) entry and the marginal CE merges the class
  into the background, so the class has no gradient of its own in that case: it moves only with the
  background through the softmax. Checked exactly: with the two logits tied (z_u = z_0), their gradients are
  bitwise equal in a case without u, and differ in a case that annotates u.
* With every class annotated the leaf loss is the plain one, hence nnU-Net's stock loss.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H

from phidice.integrations.nnunet.annotations import parse_annotations
from phidice.integrations.nnunet.loss import PhiDiceNNUNetLoss
from phidice.integrations.nnunet.options import resolve_options
from phidice.integrations.nnunet.task import NNUNetTask

KEYS = ["case_a", "case_b", "case_c"]


def leaf_loss(task, levels=3, missing="leaf", raw=None):
    opts = resolve_options(raw, task, missing=missing)
    return PhiDiceNNUNetLoss(
        opts,
        task,
        weights=None if levels is None else tuple(H.ds_weights(levels)),
        annotation_source="annotated_labels.json",
    )


def _remove(lab: torch.Tensor, b: int, label: int) -> None:
    lab[b][lab[b] == label] = 0  # an unannotated label is labelled background


@pytest.mark.parametrize("phi", ["I", "BI"])
@pytest.mark.parametrize("labels", ["regions", "regions+ignore"])
def test_regions_unannotated_region_gets_exactly_zero_gradient(labels, phi):
    task = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=False)
    loss = leaf_loss(task, raw={"phi": phi})
    # case_b does not annotate label 2 ("spot"): both regions contain it, so neither region is annotated there
    ann = parse_annotations({"case_b": [1], "case_c": ["spot", 1]}, task, case_ids=KEYS)
    rows = ann.rows(KEYS, task)
    assert rows.tolist() == [[True, True], [False, False], [True, True]]
    ann = parse_annotations({"case_b": ["whole"]}, task, case_ids=KEYS)  # a region name = all its labels
    rows = ann.rows(KEYS, task)
    assert rows.tolist() == [[True, True], [True, True], [True, True]]
    ann = parse_annotations({"case_b": ["spot"]}, task, case_ids=KEYS)  # label 1 missing: region "whole" is not
    rows = ann.rows(KEYS, task)
    assert rows.tolist() == [[True, True], [False, True], [True, True]]

    lab = H.make_labels(3, (16, 16), ignore=task.ignore_label, seed=4)
    _remove(lab, 1, 1)
    targets = H.downsample(H.to_regions(lab, task), 3)
    outputs = [(2 * torch.randn((3, 2, *t.shape[2:]))).requires_grad_(True) for t in targets]
    loss.set_batch(KEYS, rows)
    g = H.grads(loss(outputs, targets), outputs)
    for lvl in (0, 1):  # the third level has weight 0
        assert torch.count_nonzero(g[lvl][1, 0]) == 0, "unannotated region of case_b got a gradient"
        assert torch.count_nonzero(g[lvl][1, 1]) > 0
        assert torch.count_nonzero(g[lvl][0, 0]) > 0 and torch.count_nonzero(g[lvl][2, 0]) > 0


@pytest.mark.parametrize("missing", ["leaf", "marginal"])
@pytest.mark.parametrize("phi", ["I", "BI"])
@pytest.mark.parametrize("labels", ["labels", "labels+ignore"])
def test_labels_unannotated_class_moves_only_with_the_background(labels, phi, missing):
    task = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=False)
    loss = leaf_loss(task, levels=None, missing=missing, raw={"phi": phi})
    rows = parse_annotations({"case_b": ["blob"]}, task, case_ids=KEYS).rows(KEYS, task)
    assert rows.tolist() == [[True, True, True], [True, True, False], [True, True, True]]
    lab = H.make_labels(3, (16, 16), ignore=task.ignore_label, seed=6)
    _remove(lab, 1, 2)
    z = 2 * torch.randn((3, 3, 16, 16), dtype=torch.float64)
    z[:, 2] = z[:, 0]  # tie the spot logit to the background logit
    z.requires_grad_(True)
    loss.set_batch(KEYS, rows)
    (g,) = H.grads(loss(z, lab), z)
    assert torch.equal(g[1, 2], g[1, 0]), "case_b: the unannotated class has a gradient of its own"
    assert torch.count_nonzero(g[1, 2]) > 0  # it does move with the background (softmax)
    for b in (0, 2):  # cases annotating the class: it is told apart from the background
        assert (g[b, 2] - g[b, 0]).abs().max() > 1e-3


def test_plain_loss_would_teach_the_unannotated_class_to_vanish():
    # the same batch through nnUNetTrainerPhiDice's loss: the untied gradient is what the leaf loss removes
    task = NNUNetTask.from_label_dict(H.LABELS, batch_dice=False)
    plain = PhiDiceNNUNetLoss(resolve_options(None, task), task)
    lab = H.make_labels(3, (16, 16), ignore=None, seed=6)
    _remove(lab, 1, 2)
    z = 2 * torch.randn((3, 3, 16, 16), dtype=torch.float64)
    z[:, 2] = z[:, 0]
    z.requires_grad_(True)
    (g,) = H.grads(plain(z, lab), z)
    assert (g[1, 2] - g[1, 0]).abs().max() > 1e-3


@pytest.mark.parametrize("missing", ["leaf", "marginal"])
@pytest.mark.parametrize("labels", ["labels", "labels+ignore"])
def test_fully_annotated_batch_gives_nnunet_loss(labels, missing):
    task = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=True)
    ours = leaf_loss(task, levels=3, missing=missing, raw={"include_background": False})
    ours.set_batch(KEYS, parse_annotations({}, task).rows(KEYS, task))
    outputs, targets = H.make_case(task, B=3, shape=(16, 16), levels=3, seed=9)
    H.assert_matches_stock(ours, H.stock_build_loss(task, ds_levels=3), outputs, targets, offset=ours.dice_offset)


def test_unannotated_label_present_is_an_error_naming_case_and_file():
    task = NNUNetTask.from_label_dict(H.LABELS, batch_dice=False)
    loss = leaf_loss(task, levels=None)
    rows = parse_annotations({"case_b": ["blob"]}, task).rows(KEYS, task)
    lab = H.make_labels(3, (8, 8), ignore=None, seed=1)
    lab[1, 0, 0, 0] = 2  # case_b holds label 2, which it does not annotate
    loss.set_batch(KEYS, rows)
    with pytest.raises(
        ValueError,
        match=r"annotated_labels.json lists labels as not annotated .*case 'case_b' "
        r"label 2",
    ):
        loss(torch.randn(3, 3, 8, 8), lab)


def test_missing_label_loss_without_batch_keys_is_an_error():
    task = NNUNetTask.from_label_dict(H.LABELS, batch_dice=False)
    loss = leaf_loss(task, levels=None)
    with pytest.raises(RuntimeError, match="set_batch"):
        loss(torch.randn(2, 3, 8, 8), H.make_labels(2, (8, 8), ignore=None, seed=0))
