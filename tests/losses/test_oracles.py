"""Oracle tests: phidice equals MONAI and nnU-Net for every configuration they can express.

Each parametrised case is one row of tests/_oracle_rows.py, the one table of peer mappings, which
docs/mapping.md's tables show line for line (the row id is the test id; tests/losses/test_oracle_table.py).
All comparisons in float64 to 1e-6 (nnU-Net sums in float32 internally, hence not tighter).
"""

import pytest
import torch

import phidice
from _oracle_rows import MONAI_DICE, MONAI_DICE_IGNORE, MONAI_GDL, NNUNET_SOFT_DICE

monai_losses = pytest.importorskip("monai.losses")
nnunet_dice = pytest.importorskip("nnunetv2.training.loss.dice")

B, C, S = 3, 4, (6, 5, 4)


def _data(C=C, empty_class=True, sigmoid=False):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(B, C, *S, dtype=torch.float64, generator=g) * 2
    labels = torch.randint(0, C, (B, *S), generator=g)
    if empty_class:  # an empty map: class C-1 absent from image 0, class 1 absent from image 2
        labels[0][labels[0] == C - 1] = 0
        labels[2][labels[2] == 1] = 0
    if sigmoid:
        multilabel = (torch.rand(B, C, *S, generator=g) > 0.7).double()
        multilabel[1, 0] = 0  # one empty channel
        return logits, multilabel
    return logits, labels


def _onehot(labels, C=C):
    return torch.nn.functional.one_hot(labels, C).movedim(-1, 1).double()


# (row id, MONAI DiceLoss kwargs, phidice kwargs)
MONAI_ROWS = MONAI_DICE.params()


@pytest.mark.parametrize("row,monai_kw,ours", MONAI_ROWS, ids=[r[0] for r in MONAI_ROWS])
@pytest.mark.parametrize("target_form", ["labels", "onehot"])
def test_monai_diceloss_softmax(row, monai_kw, ours, target_form):
    logits, labels = _data()
    monai_kw = dict(monai_kw)
    if target_form == "onehot":
        monai_kw.pop("to_onehot_y")
        monai_target, our_target = _onehot(labels), _onehot(labels)
    else:
        monai_target, our_target = labels.unsqueeze(1), labels
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    expected = monai_losses.DiceLoss(**monai_kw)(x1, monai_target)
    got = phidice.dice_loss(x2, our_target, activation="softmax", **ours)
    if ours.get("reduction") == "none":
        expected = expected.reshape(got.shape)
        expected.sum().backward()
        got.sum().backward()
    else:
        expected.backward()
        got.backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch,phi", [(False, "I"), (True, "BI")])
@pytest.mark.parametrize("include_background", [True, False])
def test_monai_diceloss_sigmoid_multilabel(batch, phi, include_background):
    logits, target = _data(sigmoid=True)
    expected = monai_losses.DiceLoss(sigmoid=True, batch=batch, include_background=include_background)(logits, target)
    got = phidice.dice_loss(logits, target, activation="sigmoid", phi=phi, include_background=include_background)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch,phi", [(False, "I"), (True, "BI")])
def test_monai_diceloss_sigmoid_binary_labels(batch, phi):
    logits, labels = _data(C=1)
    labels = (torch.rand(B, *S, generator=torch.Generator().manual_seed(3)) > 0.6).long()
    labels[1] = 0  # an empty image
    expected = monai_losses.DiceLoss(sigmoid=True, batch=batch)(logits, labels.unsqueeze(1).double())
    got = phidice.dice_loss(logits, labels, activation="sigmoid", phi=phi)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch,phi", [(False, "I"), (True, "BI")])
@pytest.mark.parametrize("include_background", [True, False])
def test_monai_class_weights_row(batch, phi, include_background):
    """monai weight=w ≡ phidice class_weights=w scaled by mean(w): MONAI multiplies then divides by B·C."""
    logits, labels = _data()
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    w_used = w if include_background else w[1:]
    expected = monai_losses.DiceLoss(
        softmax=True, to_onehot_y=True, batch=batch, weight=w_used, include_background=include_background
    )(logits, labels.unsqueeze(1))
    got = phidice.dice_loss(logits, labels, phi=phi, class_weights=w_used, include_background=include_background)
    torch.testing.assert_close(got * w_used.mean(), expected, rtol=0, atol=1e-6)


def _monai_has_ignore_index():
    import inspect

    return "ignore_index" in inspect.signature(monai_losses.DiceLoss).parameters


IGNORE = 255
# (row id, MONAI DiceLoss kwargs, phidice kwargs): MONAI ≥ 1.6 `ignore_index`, labels (B, 1, *S) as MONAI keeps
# them (float); ignored voxels leave every sum after the activation in both
MONAI_IGNORE_ROWS = MONAI_DICE_IGNORE.params()


def _ignored_labels(sentinel):
    logits, labels = _data()
    g = torch.Generator().manual_seed(7)
    ignored = torch.rand(labels.shape, generator=g) < 0.2
    ignored[1] = False  # one image without ignored voxels
    return logits, labels, ignored, labels.masked_fill(ignored, sentinel)


@pytest.mark.parametrize("row,monai_kw,ours", MONAI_IGNORE_ROWS, ids=[r[0] for r in MONAI_IGNORE_ROWS])
def test_monai_diceloss_ignore_index(row, monai_kw, ours):
    if not _monai_has_ignore_index():
        pytest.skip("MONAI < 1.6: DiceLoss has no ignore_index")
    sentinel = monai_kw["ignore_index"]
    logits, labels, ignored, marked = _ignored_labels(sentinel)
    if 0 <= sentinel < C:  # a class index: every voxel of that class is ignored
        ignored = labels == sentinel
        marked = labels
    target = marked.unsqueeze(1).double()  # MONAI's float labels, given to both as they are
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    expected = monai_losses.DiceLoss(**monai_kw)(x1, target)
    got = phidice.dice_loss(x2, target, **ours)
    expected.backward()
    got.backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-6)
    # the ignored voxels matter: without ignore_index (sentinel voxels read as background) the loss differs
    plain = phidice.dice_loss(logits, marked.masked_fill(ignored, 0), **{**ours, "ignore_index": None})
    assert abs(plain.item() - expected.item()) > 1e-3


@pytest.mark.parametrize("sentinel", [IGNORE, 2], ids=["one-hot-sentinel", "one-hot-class"])
@pytest.mark.parametrize("batch,phi", [(False, "I"), (True, "BI")])
def test_monai_diceloss_ignore_index_onehot(sentinel, batch, phi):
    """One-hot targets: MONAI masks the all-zero voxels (a sentinel) or those of class k (k < C); phidice says
    the same with ``mask=``."""
    if not _monai_has_ignore_index():
        pytest.skip("MONAI < 1.6: DiceLoss has no ignore_index")
    logits, labels, ignored, _ = _ignored_labels(0)
    onehot = _onehot(labels)
    if sentinel >= C:
        onehot = onehot.masked_fill(ignored.unsqueeze(1), 0.0)
        mask = onehot.sum(1, keepdim=True) > 0
    else:
        mask = onehot[:, sentinel : sentinel + 1] == 0
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    expected = monai_losses.DiceLoss(softmax=True, batch=batch, ignore_index=sentinel)(x1, onehot)
    got = phidice.dice_loss(x2, onehot, phi=phi, mask=mask)
    expected.backward()
    got.backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-6)
    assert abs(phidice.dice_loss(logits, onehot, phi=phi).item() - expected.item()) > 1e-3  # the mask matters


@pytest.mark.parametrize("batch,phi", [(False, "I"), (True, "BI")])
def test_monai_diceloss_ignore_index_sigmoid_binary(batch, phi):
    if not _monai_has_ignore_index():
        pytest.skip("MONAI < 1.6: DiceLoss has no ignore_index")
    logits, _ = _data(C=1)
    g = torch.Generator().manual_seed(3)
    labels = (torch.rand(B, *S, generator=g) > 0.6).long()
    labels[torch.rand(B, *S, generator=g) < 0.2] = IGNORE
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    expected = monai_losses.DiceLoss(sigmoid=True, batch=batch, ignore_index=IGNORE)(x1, labels.unsqueeze(1).double())
    got = phidice.dice_loss(x2, labels, activation="sigmoid", phi=phi, ignore_index=IGNORE)
    expected.backward()
    got.backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-6)
    plain = phidice.dice_loss(logits, labels.masked_fill(labels == IGNORE, 0), activation="sigmoid", phi=phi)
    assert abs(plain.item() - expected.item()) > 1e-3  # ignoring the voxels matters


GDL_ROWS = MONAI_GDL.params()


@pytest.mark.parametrize("row,monai_kw,ours", GDL_ROWS, ids=[r[0] for r in GDL_ROWS])
def test_monai_generalized_dice(row, monai_kw, ours):
    # empty classes in some images exercise the "∞ weight → largest weight of the subset" rule
    logits, labels = _data()
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    expected = monai_losses.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, **monai_kw)(x1, labels.unsqueeze(1))
    got = phidice.dice_loss(x2, labels, **ours)
    expected.backward()
    got.backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-6)


def test_monai_generalized_dice_all_empty_subset_differs_by_design():
    """Where every class of a subset is empty, MONAI's weights are all 0 (loss 1 − smooth_nr/smooth_dr, no
    gradient); phidice sets them to 1 so ε decides, as in a plain Dice (documented rule)."""
    logits = torch.randn(1, 2, 8, dtype=torch.float64)
    target = torch.zeros(1, 2, 8, dtype=torch.float64)
    monai = monai_losses.GeneralizedDiceLoss(softmax=True)(logits, target)
    ours = phidice.dice_loss(logits, target, phi="CI", weighting="generalized")
    p = torch.softmax(logits, 1)
    assert float(monai) == pytest.approx(0.0)  # 1 − 1e-5/1e-5
    assert float(ours) == pytest.approx(1 - 1e-5 / (float(p.sum()) + 1e-5))


NNUNET_ROWS = NNUNET_SOFT_DICE.params()


@pytest.mark.parametrize("row,nn_kw,ours", NNUNET_ROWS, ids=[r[0] for r in NNUNET_ROWS])
@pytest.mark.parametrize("cls", ["SoftDiceLoss", "MemoryEfficientSoftDiceLoss"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_nnunet_soft_dice(row, nn_kw, ours, cls, with_mask):
    logits, labels = _data()
    loss_mask = None
    if with_mask:
        loss_mask = (torch.rand(B, 1, *S, generator=torch.Generator().manual_seed(5)) > 0.3).double()
    softmax = lambda t: torch.softmax(t, 1)  # noqa: E731
    nn_loss = getattr(nnunet_dice, cls)(apply_nonlin=softmax, ddp=False, **nn_kw)
    target = labels.unsqueeze(1).double()
    if cls == "SoftDiceLoss":  # SoftDiceLoss wants a one-hot target
        target = _onehot(labels)
    expected = 1 + nn_loss(logits, target, loss_mask=loss_mask)  # nnU-Net returns −DSC
    got = phidice.dice_loss(logits, labels, mask=loss_mask, **ours)
    torch.testing.assert_close(got, expected.to(got.dtype), rtol=0, atol=1e-6)
