"""One validated configuration: errors at construction, ε/weights as buffers, and ``validate_args``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import phidice
from phidice import CEConfig, DiceConfig

X = torch.randn(2, 3, 5, 5)
Y = torch.randint(0, 3, (2, 5, 5))
ANNOTATED = torch.tensor([[True, True, True], [True, True, False]])
ONE_HOT = torch.nn.functional.one_hot(Y, 3).movedim(-1, 1).float()
Y_PARTIAL = torch.where((Y == 2) & (torch.arange(2).view(2, 1, 1) == 1), 0, Y)

MODULES = [
    phidice.DiceLoss,
    phidice.DiceCELoss,
    phidice.LeafDiceLoss,
    phidice.MarginalDiceLoss,
    phidice.LeafDiceCELoss,
    phidice.MarginalDiceCELoss,
]

BAD_OPTIONS = [
    (dict(phi="IB C"), ValueError, "phi"),
    (dict(phi=3), TypeError, "phi must be a string"),
    (dict(eps=-1.0), ValueError, "eps must be finite and ≥ 0"),
    (dict(eps=float("inf")), ValueError, "eps must be finite"),
    (dict(eps=[1.0, -2.0]), ValueError, "eps must be ≥ 0"),
    (dict(eps=[[1.0, 2.0]]), ValueError, "eps must be a scalar or 1-D"),
    (dict(eps="big"), TypeError, "eps must be a number"),
    (dict(eps=True), TypeError, "eps must be a number or a sequence of numbers; got bool"),
    (dict(eps=[]), ValueError, "eps must hold at least one value"),
    (dict(eps_nr=float("nan")), ValueError, "eps_nr must be finite"),
    (dict(eps_dr=-3.0), ValueError, "eps_dr must be finite and ≥ 0"),
    (dict(eps_empty=[-1.0]), ValueError, "eps_empty must be ≥ 0"),
    (dict(class_weights=[1.0, float("nan")]), ValueError, "class_weights must be finite"),
    (dict(activation="relu"), ValueError, "activation must be one of"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(empty="ignore"), ValueError, "empty must be one of"),
    (dict(weighting="square"), ValueError, "weighting must be one of"),
    (dict(weighting="generalized"), ValueError, r"needs a Φ that sums over classes \('CI' or 'BCI'\)"),
    (dict(fused="yes"), ValueError, "fused must be True, False or 'auto'"),
    (dict(fused=2), ValueError, "fused must be True, False or 'auto'"),
    (dict(fused=1.0), ValueError, "fused must be True, False or 'auto'"),
    (dict(ignore_index=2.5), TypeError, "ignore_index must be an integer"),
    (dict(ignore_index=True), TypeError, "ignore_index must be an integer"),
    (dict(squared="no"), TypeError, "squared must be True or False"),
    (dict(include_background=None), TypeError, "include_background must be True or False"),
    (dict(sync_batch=2), TypeError, "sync_batch must be True or False"),
    (dict(validate_args="yes"), TypeError, "validate_args must be True or False"),
    (dict(check_finite=0.5), TypeError, "check_finite must be True or False"),
    (dict(unknown_option=1), TypeError, "unknown_option"),
]


@pytest.mark.parametrize("cls", MODULES)
@pytest.mark.parametrize("options,error,match", BAD_OPTIONS, ids=[str(o[0]) for o in BAD_OPTIONS])
def test_every_invalid_option_fails_at_construction(cls, options, error, match):
    with pytest.raises(error, match=match):
        cls(**options)


BAD_CE = [
    (dict(lambda_ce=-1.0), "lambda_ce must be a number ≥ 0"),
    (dict(lambda_dice=True), "lambda_dice must be a number ≥ 0; got True"),
    (dict(lambda_dice="1"), "lambda_dice must be a number"),
    (dict(label_smoothing=1.5), r"label_smoothing must be a number in \[0, 1\]"),
    (dict(ce_weight=[1.0, -1.0, 1.0]), "ce_weight must be ≥ 0"),
    (dict(activation=None), "needs logits"),
    (dict(reduction="none"), "reduction 'mean' or 'sum'"),
]


@pytest.mark.parametrize("cls", [phidice.DiceCELoss, phidice.LeafDiceCELoss, phidice.MarginalDiceCELoss])
@pytest.mark.parametrize("options,match", BAD_CE, ids=[str(o[0]) for o in BAD_CE])
def test_compound_options_fail_at_construction(cls, options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(**options)


@pytest.mark.parametrize("cls", [phidice.MarginalDiceLoss, phidice.MarginalDiceCELoss])
def test_marginal_rules_at_construction(cls):
    with pytest.raises(ValueError, match="needs activation='softmax'"):
        cls(activation="sigmoid")
    with pytest.raises(ValueError, match="fused=True but"):
        cls(fused=True)
    cls(fused=True, include_background=False)  # the fused path applies without the merged background


def test_functional_forms_build_the_same_config():
    for fn in (phidice.dice_loss, phidice.missing.leaf_dice_loss):
        with pytest.raises(ValueError, match="fused must be True, False or 'auto'"):
            fn(X, Y, fused="yes")
    with pytest.raises(TypeError, match="unknown option"):
        phidice.dice_ce_loss(X, Y, lambda_x=1.0)
    with pytest.raises(TypeError, match="Dice \\+ cross-entropy forms take them"):
        phidice.missing.leaf_dice_loss(X, Y, lambda_ce=1.0)


def test_config_is_frozen_reusable_and_serialisable():
    config = DiceConfig(phi="bi", eps=[1.0, 2.0, 3.0], include_background=False)
    assert config.phi is phidice.Phi.BI and config.eps == (1.0, 2.0, 3.0)
    with pytest.raises(AttributeError):
        config.phi = "I"
    assert DiceConfig.from_dict(config.to_dict()) == config
    loss = phidice.DiceLoss.from_config(config)
    torch.testing.assert_close(loss(X, Y), phidice.dice_loss(X, Y, config=config))
    torch.testing.assert_close(
        phidice.dice_loss(X, Y, config=config, phi="I"),
        phidice.dice_loss(X, Y, phi="I", eps=[1.0, 2.0, 3.0], include_background=False),
    )
    ce = phidice.DiceCELoss.from_config(config, lambda_ce=0.5)
    assert ce.ce == CEConfig(lambda_ce=0.5)
    with pytest.raises(TypeError, match="no cross-entropy term"):
        phidice.DiceLoss.from_config(config, lambda_ce=0.5)
    assert "phi='BI'" in repr(loss) and "include_background=False" in repr(loss)


def test_eps_from_a_tensor_is_read_once():
    eps = phidice.estimate_epsilon(Y, num_classes=3, progress=False)
    loss = phidice.DiceLoss(eps=eps)
    assert loss.config.eps == tuple(eps.tolist())
    torch.testing.assert_close(loss(X, Y), phidice.dice_loss(X, Y, eps=eps.tolist()))


# ------------------------------------------------------------------------------------------------- buffers


def test_eps_and_weights_are_buffers_in_state_dict():
    loss = phidice.DiceCELoss(
        "CI", eps=[1.0, 2.0, 3.0], eps_empty=5.0, class_weights=[1.0, 2.0, 3.0], ce_weight=[0.5, 1.0, 2.0]
    )
    state = loss.state_dict()
    assert set(state) == {"eps_nr", "eps_dr", "eps_empty", "class_weights", "ce_weight"}
    assert state["eps_nr"].dtype == torch.float64 and state["eps_nr"].tolist() == [1.0, 2.0, 3.0]
    other = phidice.DiceCELoss(
        "CI", eps=[9.0, 9.0, 9.0], eps_empty=1.0, class_weights=[1.0, 1.0, 1.0], ce_weight=[1.0, 1.0, 1.0]
    )
    assert not torch.allclose(other(X, Y), loss(X, Y))
    other.load_state_dict(state)
    torch.testing.assert_close(other(X, Y), loss(X, Y))
    assert other.config.eps_nr == (1.0, 2.0, 3.0) and other.config.eps_empty == 5.0
    assert other.ce.ce_weight == (0.5, 1.0, 2.0)


def test_state_dict_round_trip_inside_a_model(tmp_path):
    model = torch.nn.ModuleDict({"net": torch.nn.Conv2d(1, 3, 1), "loss": phidice.DiceLoss(eps=[1.0, 2.0, 3.0])})
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = torch.nn.ModuleDict({"net": torch.nn.Conv2d(1, 3, 1), "loss": phidice.DiceLoss(eps=[7.0, 7.0, 7.0])})
    fresh.load_state_dict(torch.load(tmp_path / "m.pt"))
    assert fresh["loss"].eps_nr.tolist() == [1.0, 2.0, 3.0]


def test_checkpoint_without_buffers_still_loads():
    """A model saved before ε lived in buffers (no loss entries) loads strictly and keeps the configured ε."""
    model = torch.nn.ModuleDict({"net": torch.nn.Conv2d(1, 3, 1), "loss": phidice.DiceLoss(eps=[1.0, 2.0, 3.0])})
    old = {k: v for k, v in model.state_dict().items() if k.startswith("net.")}
    model.load_state_dict(old, strict=True)
    assert model["loss"].eps_nr.tolist() == [1.0, 2.0, 3.0]


def test_buffers_follow_the_device_and_stay_float64():
    loss = phidice.LeafDiceLoss(eps=[1.0, 2.0, 3.0], class_weights=[1.0, 2.0, 3.0])
    loss.half()
    assert loss.eps_nr.dtype == torch.float64 and loss.eps_nr.tolist() == [1.0, 2.0, 3.0]
    loss.to("meta")
    assert loss.eps_nr.device.type == "meta" and loss.class_weights.device.type == "meta"
    assert loss.eps_nr.dtype == torch.float64


def test_buffers_are_used_in_the_computation():
    loss = phidice.DiceLoss(eps=1.0)
    before = loss(X, Y)
    with torch.no_grad():
        loss.eps_nr.fill_(100.0)
        loss.eps_dr.fill_(100.0)
    assert not torch.allclose(loss(X, Y), before)
    torch.testing.assert_close(loss(X, Y), phidice.dice_loss(X, Y, eps=100.0))


# ------------------------------------------------------------------------------------------- validate_args


class HostReads(TorchDispatchMode):
    """Counts the operations that read a tensor value back to the host (a synchronisation on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


CALLS = {
    "dice-reference": lambda **o: phidice.dice_loss(X, Y, fused=False, **o),
    "dice-fused-torch": lambda **o: phidice.dice_loss(X.double(), Y, fused=True, **o),
    "dice-onehot-mask": lambda **o: phidice.dice_loss(X, ONE_HOT, mask=torch.ones(2, 5, 5), **o),
    "dice-float-labels": lambda **o: phidice.dice_loss(X, Y.float().unsqueeze(1), fused=False, **o),
    "dice-ce": lambda **o: phidice.DiceCELoss(fused=False, ignore_index=7, **o)(X, Y),
    "leaf": lambda **o: phidice.LeafDiceLoss(fused=False, **o)(X, Y_PARTIAL, ANNOTATED),
    "marginal-ce": lambda **o: phidice.MarginalDiceCELoss(**o)(X, Y_PARTIAL, ANNOTATED.long()),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_validate_args_false_reads_nothing_back(name):
    with HostReads() as checked:
        CALLS[name]()
    assert checked.count > 0  # the checks do read values back ...
    with HostReads() as unchecked:
        loss = CALLS[name](validate_args=False)
    assert unchecked.count == 0  # ... and validate_args=False skips every one of them
    torch.testing.assert_close(loss, CALLS[name]())


def test_validate_args_false_does_not_catch_bad_labels():
    y = Y.clone()
    y[0, 0, 0] = 5
    with pytest.raises(ValueError, match="target labels must lie in"):
        phidice.dice_loss(X, y, fused=False)
    with pytest.raises((RuntimeError, IndexError)):  # an indexing error instead of the clear message
        phidice.dice_loss(X, y, fused=False, validate_args=False)
    with pytest.raises(ValueError, match="target labels must lie in"):  # numba checks in its own pass
        phidice.dice_loss(X, y, fused=True, validate_args=False)


def test_empty_rules_of_losses_and_scores_point_to_each_other():
    with pytest.raises(ValueError, match="'nan' is a score rule; the loss's counterpart is 'skip'"):
        phidice.DiceLoss(empty="nan")
    with pytest.raises(ValueError, match="'skip' is a loss rule; the score's counterpart is 'nan'"):
        phidice.dice_score(Y, Y, num_classes=3, empty="skip")
    with pytest.raises(ValueError, match="'smooth' is a loss rule; the score's counterpart is 'one'"):
        phidice.DiceAccumulator(empty="smooth")


def test_buffers_left_behind_follow_the_input():
    """A loss module that was not moved with the model: its buffers meet inputs elsewhere (meta stands in for a
    GPU here) and are moved per call, not refused."""
    loss = phidice.DiceCELoss(
        "CI",
        eps=[1.0, 2.0, 3.0],
        class_weights=[1.0, 2.0, 3.0],
        ce_weight=[1.0, 1.0, 2.0],
        eps_empty=4.0,
        validate_args=False,
    )  # meta tensors hold no values to check
    out = loss(X.to("meta"), Y.to("meta"))
    assert out.device.type == "meta"
    assert loss.eps_nr.device.type == "cpu"


def test_fused_flags_are_read_as_bools():
    """0/1 and NumPy bools are False/True (the dispatch tests ``is True`` / ``is False``), not 'auto'."""
    assert DiceConfig(fused=0).fused is False and DiceConfig(fused=np.False_).fused is False
    assert DiceConfig(fused=1).fused is True and DiceConfig(fused=np.True_).fused is True
    with pytest.raises(ValueError, match="fused=True but"):
        phidice.dice_loss(X, Y, fused=1, squared=True)  # demanded, as fused=True
    assert float(phidice.dice_loss(X, Y, fused=np.False_)) == float(phidice.dice_loss(X, Y, fused=False))
