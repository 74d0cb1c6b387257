"""Fidon's label-set form → (target, annotated)."""

import pytest
import torch

import phidice
from phidice.missing.functional import leaf_dice_loss, marginal_dice_loss


def test_conversion_by_hand():
    # C = 4 leaves; 4 = {0, 1} ("background or class 1"), 5 = {0, 2, 3}
    labels = torch.tensor([[[0, 1], [5, 5]], [[2, 4], [4, 3]], [[0, 1], [2, 3]]])
    target, annotated = phidice.annotated_from_label_sets(labels, {4: [0, 1], 5: [0, 2, 3]}, 4)
    assert torch.equal(target, torch.tensor([[[0, 1], [0, 0]], [[2, 0], [0, 3]], [[0, 1], [2, 3]]]))
    assert torch.equal(annotated, torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool))


def test_converted_form_feeds_the_losses():
    torch.manual_seed(0)
    labels = torch.tensor([[0, 1, 2, 3, 2, 0], [4, 4, 1, 3, 3, 4]])
    target, annotated = phidice.annotated_from_label_sets(labels, {4: [0, 2]}, 4)
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    for fn in (leaf_dice_loss, marginal_dice_loss):
        assert torch.isfinite(fn(x, target, annotated, phi="BI"))
    # sample 1: class 2 unannotated; the leaf loss ignores class 2 and the background there
    reduced = leaf_dice_loss(x, target, annotated, phi="I", reduction="none")
    assert reduced[1, 0] == 0 and reduced[1, 2] == 0 and bool((reduced[0] > 0).all())


def test_ignore_index_passes_through():
    labels = torch.tensor([[255, 4, 1]])
    target, annotated = phidice.annotated_from_label_sets(labels, {4: [0, 2]}, 3, ignore_index=255)
    assert torch.equal(target, torch.tensor([[255, 0, 1]]))
    assert torch.equal(annotated, torch.tensor([[True, True, False]]))


def test_superset_without_background_is_not_representable():
    with pytest.raises(ValueError, match="does not contain the background 0"):
        phidice.annotated_from_label_sets(torch.tensor([[4, 1]]), {4: [2, 3]}, 4)


def test_partly_annotated_class_in_one_sample():
    with pytest.raises(ValueError, match=r"\(sample, class\) \[\(0, 2\)\].*annotated only partly"):
        phidice.annotated_from_label_sets(torch.tensor([[4, 2], [1, 0]]), {4: [0, 2]}, 3)


def test_bad_maps_and_labels():
    f = phidice.annotated_from_label_sets
    with pytest.raises(ValueError, match="must be an integer ≥ num_classes"):
        f(torch.tensor([[0, 1]]), {2: [0, 1]}, 3)
    with pytest.raises(ValueError, match=r"must list leaf labels in \[0, 2\]"):
        f(torch.tensor([[0, 1]]), {3: [0, 7]}, 3)
    with pytest.raises(ValueError, match=r"labels hold \[6\]"):
        f(torch.tensor([[0, 6]]), {3: [0, 1]}, 3)
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        f(torch.tensor([[0.0, 1.0]]), {3: [0, 1]}, 3)
    with pytest.raises(TypeError, match="labels_superset_map must be a dict"):
        f(torch.tensor([[0, 1]]), [(3, [0, 1])], 3)
