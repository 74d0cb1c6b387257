"""Bad input: every case a clear ValueError/TypeError naming the argument, never a silent number or NaN."""

import pytest
import torch

import phidice

X = torch.randn(2, 3, 4, 4)
Y = torch.randint(0, 3, (2, 4, 4))


@pytest.mark.parametrize("phi", ["X", "IB C", "", "batch", "BIC"])
def test_unknown_phi_lists_the_four(phi):
    with pytest.raises(ValueError, match=r"phi.*'I'.*'CI'.*'BI'.*'BCI'"):
        phidice.dice_loss(X, Y, phi=phi)
    with pytest.raises(ValueError, match="phi"):
        phidice.DiceLoss(phi)


def test_phi_is_case_insensitive():
    torch.testing.assert_close(phidice.dice_loss(X, Y, phi="bci"), phidice.dice_loss(X, Y, phi="BCI"))
    with pytest.raises(TypeError, match="phi"):
        phidice.dice_loss(X, Y, phi=3)


def test_bic_hint():
    with pytest.raises(ValueError, match="same subsets as 'BCI'"):
        phidice.dice_loss(X, Y, phi="BIC")


@pytest.mark.parametrize(
    "target,match",
    [
        (torch.randint(0, 3, (2, 4, 5)), "target shape"),
        (torch.randint(0, 3, (3, 4, 4)), "batch size"),
        (torch.rand(2, 2, 4, 4), "target shape"),
        (torch.randint(0, 3, (2, 2, 4, 4)), "target shape"),
    ],
)
def test_shape_mismatch(target, match):
    with pytest.raises(ValueError, match=match):
        phidice.dice_loss(X, target)


def test_input_shape_and_type():
    with pytest.raises(ValueError, match=r"input must have shape \(B, C, \*spatial\)"):
        phidice.dice_loss(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        phidice.dice_loss([[0.1]], Y)
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        phidice.dice_loss(X, [[0]])


@pytest.mark.parametrize("bad", [3, 7, -1])
def test_label_out_of_range(bad):
    y = Y.clone()
    y[1, 2, 2] = bad
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\]"):
        phidice.dice_loss(X, y)


def test_ignore_index_is_excepted_but_other_negatives_are_not():
    y = Y.clone()
    y[0, 0, 0] = -100
    phidice.dice_loss(X, y, ignore_index=-100)  # fine
    y[0, 0, 1] = -1
    with pytest.raises(ValueError, match=r"ignore_index=-100 excepted"):
        phidice.dice_loss(X, y, ignore_index=-100)


def test_binary_sigmoid_labels_must_be_0_or_1():
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 1\]"):
        phidice.dice_loss(torch.randn(2, 1, 5), torch.full((2, 5), 2), activation="sigmoid")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(eps=[1.0, 2.0]), "eps has 2 values but the input has 3 classes"),
        (dict(eps=[1.0, 2.0, 3.0, 4.0]), "eps has 4 values"),
        (dict(eps=-1.0), "eps must be finite and ≥ 0"),
        (dict(eps=[1.0, -2.0, 3.0]), "eps must be ≥ 0"),
        (dict(eps=float("nan")), "eps must be finite"),
        (dict(eps=[[1.0, 2.0, 3.0]]), "eps must be a scalar or 1-D"),
        (dict(eps="big"), "eps must be a number"),
        (dict(eps_nr=[1.0]), "eps_nr has 1 values"),
        (dict(eps_dr=-3.0), "eps_dr must be finite and ≥ 0"),
        (dict(eps_empty=[1.0, 2.0]), "eps_empty has 2 values"),
        (dict(class_weights=[1.0, 2.0]), "class_weights has 2 values"),
        (dict(class_weights=[1.0, -2.0, 1.0]), "class_weights must be ≥ 0"),
        (dict(eps=[1.0, 2.0, 3.0, 4.0], include_background=False), r"expected 2 or 3 \(with background, dropped\)"),
    ],
)
def test_eps_and_weights(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        phidice.dice_loss(X, Y, **kw)


def test_eps_length_c_or_c_minus_1_without_background():
    a = phidice.dice_loss(X, Y, eps=[9.0, 1.0, 2.0], include_background=False)
    b = phidice.dice_loss(X, Y, eps=[1.0, 2.0], include_background=False)
    torch.testing.assert_close(a, b)


def test_integer_input_with_activation():
    with pytest.raises(TypeError, match="input has integer dtype.*activation='softmax'"):
        phidice.dice_loss(torch.randint(0, 2, (2, 3, 4, 4)), Y)
    with pytest.raises(TypeError, match="floating-point"):
        phidice.dice_loss(torch.randint(0, 2, (2, 3, 4, 4)), Y, activation=None)


def test_empty_batch_and_zero_sized_dims():
    with pytest.raises(ValueError, match="empty batch"):
        phidice.dice_loss(torch.randn(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="zero-sized"):
        phidice.dice_loss(torch.randn(2, 3, 0, 4), torch.zeros(2, 0, 4, dtype=torch.long))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_check_finite(value):
    x = X.clone()
    x[0, 1, 2, 3] = value
    with pytest.raises(ValueError, match=r"input contains NaN or Inf \(check_finite=True\)"):
        phidice.dice_loss(x, Y, check_finite=True)
    with pytest.raises(ValueError, match="input contains NaN or Inf"):
        phidice.DiceLoss(check_finite=True)(x, Y)
    t = torch.nn.functional.one_hot(Y, 3).movedim(-1, 1).float()
    t[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match="target"):
        phidice.dice_loss(X, t, check_finite=True)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(activation="relu"), "activation must be one of"),
        (dict(reduction="avg"), "reduction must be one of"),
        (dict(empty="ignore"), "empty must be one of"),
        (dict(weighting="square"), "weighting must be one of"),
        (dict(weighting="generalized"), r"needs a Φ that sums over classes \('CI' or 'BCI'\)"),
        (dict(fused="yes"), "fused must be True, False or 'auto'"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        phidice.dice_loss(X, Y, **kw)
    if "fused" not in kw:
        with pytest.raises(ValueError, match=match):
            phidice.DiceLoss(**kw)


def test_soft_target_out_of_range_and_softmax_single_channel():
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\]"):
        phidice.dice_loss(X, torch.full((2, 3, 4, 4), 1.5))
    with pytest.raises(ValueError, match="softmax' needs at least 2 channels"):
        phidice.dice_loss(torch.randn(2, 1, 4), torch.zeros(2, 4, dtype=torch.long))


def test_float_labels_must_be_integers():
    with pytest.raises(ValueError, match="non-integer values"):
        phidice.dice_loss(X, torch.full((2, 1, 4, 4), 0.5))


def test_mask_errors():
    with pytest.raises(ValueError, match="mask shape"):
        phidice.dice_loss(X, Y, mask=torch.ones(2, 4, 5))
    with pytest.raises(ValueError, match=r"mask values must lie in \[0, 1\]"):
        phidice.dice_loss(X, Y, mask=torch.full((2, 4, 4), 2.0))
    with pytest.raises(TypeError, match="mask must be a torch.Tensor"):
        phidice.dice_loss(X, Y, mask=[1])


def test_ignore_index_with_dense_target():
    onehot = torch.nn.functional.one_hot(Y, 3).movedim(-1, 1).float()
    with pytest.raises(ValueError, match="ignore_index applies to integer label targets"):
        phidice.dice_loss(X, onehot, ignore_index=255)


def test_dice_ce_errors():
    with pytest.raises(ValueError, match="DiceCELoss needs logits"):
        phidice.DiceCELoss(activation=None)
    with pytest.raises(ValueError, match="ce_weight must have one value per class"):
        phidice.DiceCELoss(ce_weight=[1.0, 2.0])(X, Y)
    with pytest.raises(ValueError, match="lambda_ce"):
        phidice.DiceCELoss(lambda_ce=-1.0)(X, Y)


def test_dice_gradient_errors():
    with pytest.raises(ValueError, match="reduction='none'"):
        phidice.dice_gradient(torch.softmax(X, 1), Y, "I", reduction="none")
    with pytest.raises(ValueError, match="phi"):
        phidice.dice_gradient(torch.softmax(X, 1), Y, "Q")
