"""Every public loss shows the options of its configuration: its parameters are the config's fields, with
their types and defaults, Φ and ε first — and a field added to a configuration shows up by itself."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc
import typing
from typing import Literal

import pytest

import phidice
from phidice.core.config import CEConfig, DiceConfig, tversky
from phidice.core.signature import config_signature, option_parameters, signature_options
from phidice.missing import functional as missing_functional

DICE = [f.name for f in dataclasses.fields(DiceConfig)]
CE = [f.name for f in dataclasses.fields(CEConfig)]
TVERSKY = list(inspect.signature(tversky).parameters)  # alpha, beta, gamma
GRADIENT_SET = ["activation", "fused"]  # the gradient is that of probabilities, on the reference path


def minus(names, *removed):
    gone = {n for group in removed for n in group}
    return [n for n in names if n not in gone]


# public name -> the options it must show (its own parameters — input, target, mask, config … — aside)
TORCH = {
    "DiceLoss": DICE,
    "dice_loss": DICE,
    "loss_from_stats": DICE,
    "compute_stats": [
        "activation",
        "squared",
        "include_background",
        "ignore_index",
        "check_finite",
        "fused",
        "validate_args",
    ],
    "DiceCELoss": DICE + CE,
    "dice_ce_loss": DICE + CE,
    "TverskyLoss": minus(DICE, ["overlap"]) + TVERSKY,
    "tversky_loss": minus(DICE, ["overlap"]) + TVERSKY,
    "TverskyCELoss": minus(DICE, ["overlap"]) + TVERSKY + CE,
    "tversky_ce_loss": minus(DICE, ["overlap"]) + TVERSKY + CE,
    "JaccardLoss": minus(DICE, ["overlap"]),
    "jaccard_loss": minus(DICE, ["overlap"]),
    "JaccardCELoss": minus(DICE, ["overlap"]) + CE,
    "jaccard_ce_loss": minus(DICE, ["overlap"]) + CE,
    "LeafDiceLoss": DICE,
    "MarginalDiceLoss": DICE,
    "LeafDiceCELoss": DICE + CE,
    "MarginalDiceCELoss": DICE + CE,
    "MarginalCrossEntropyLoss": list(missing_functional.MARGINAL_CE_OPTIONS),
    "dice_gradient": minus(DICE, GRADIENT_SET),
    "jaccard_gradient": minus(DICE, GRADIENT_SET, ["overlap"]),
    "tversky_gradient": minus(DICE, GRADIENT_SET, ["overlap"]) + TVERSKY,
}
MISSING_FUNCTIONAL = {
    "leaf_dice_loss": DICE,
    "marginal_dice_loss": DICE,
    "leaf_dice_ce_loss": DICE + CE,
    "marginal_dice_ce_loss": DICE + CE,
    "marginal_cross_entropy": list(missing_functional.MARGINAL_CE_OPTIONS),
}
# what a loss takes besides its options: the data, a built config, the Keras layout and name
NOT_OPTIONS = {
    "input",
    "target",
    "probs",
    "annotated",
    "stats",
    "mask",
    "config",
    "ce",
    "keep",
    "num_channels",
    "data_format",
    "name",
    "labels_superset_map",
}


def accepted_hints(cls) -> dict:
    """A config's field types as a caller may pass them: the ``accepts`` metadata where ``__post_init__``
    normalises a wider input (Φ as a name, overlap as None) to the field's own type."""
    hints = typing.get_type_hints(cls)
    return {**hints, **{f.name: f.metadata["accepts"] for f in dataclasses.fields(cls) if "accepts" in f.metadata}}


HINTS = {**accepted_hints(DiceConfig), **accepted_hints(CEConfig), **typing.get_type_hints(tversky)}


def test_phi_is_shown_as_the_names_a_caller_writes():
    """Φ is annotated ``Phi`` on the config (what code reading it sees) and accepts "I" … "BCI" in signatures."""
    annotation = inspect.signature(phidice.DiceLoss).parameters["phi"].annotation
    assert typing.Literal["I", "CI", "BI", "BCI"] in typing.get_args(annotation)
    assert typing.get_type_hints(DiceConfig)["phi"] is phidice.core.phi.Phi


DEFAULTS = {p.name: p.default for p in option_parameters(DiceConfig, CEConfig, tversky)}


def options_of(obj) -> list[str]:
    return [n for n in inspect.signature(obj).parameters if n not in NOT_OPTIONS]


def check(obj, expected):
    sig = inspect.signature(obj)
    assert sorted(options_of(obj)) == sorted(expected)
    assert "options" not in sig.parameters and all(p.kind != p.VAR_KEYWORD for p in sig.parameters.values())
    for name in options_of(obj):
        p = sig.parameters[name]
        assert p.annotation == HINTS[name], name
        assert p.default == DEFAULTS[name], name
    if "phi" in expected:  # Φ and ε first among the options
        assert options_of(obj)[:2] == ["phi", "eps"]


@pytest.mark.parametrize("name", sorted(TORCH))
def test_every_public_loss_shows_the_fields_of_its_config(name):
    obj = getattr(phidice, name, None) or getattr(phidice.missing, name)
    check(obj, TORCH[name])
    if isinstance(obj, type):  # the class and its __init__ agree; the option order is that of the config
        assert list(inspect.signature(obj.__init__).parameters)[1:] == list(inspect.signature(obj).parameters)


@pytest.mark.parametrize("name", sorted(MISSING_FUNCTIONAL))
def test_the_missing_label_functionals_too(name):
    check(getattr(missing_functional, name), MISSING_FUNCTIONAL[name])


def test_phi_and_eps_lead_positionally_in_every_loss_class():
    for name, expected in TORCH.items():
        obj = getattr(phidice, name, None) or getattr(phidice.missing, name)
        if isinstance(obj, type) and "phi" in expected:
            positional = [
                p.name for p in inspect.signature(obj).parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD
            ]
            assert positional == ["phi", "eps"], name


def test_a_field_added_to_a_config_appears_by_itself():
    @dataclasses.dataclass(frozen=True)
    class Grown:
        phi: Literal["I", "BI"] = "I"
        eps: float = 1e-5
        soft_label: bool = False

    @config_signature(Grown)
    def loss(input, target, *, mask=None, **options):
        return options

    @config_signature(Grown)
    class Loss:
        def __init__(self, phi="I", eps=1e-5, **options):
            self.options = options

    assert list(inspect.signature(loss).parameters) == ["input", "target", "phi", "eps", "soft_label", "mask"]
    assert inspect.signature(loss).parameters["soft_label"].annotation is bool
    assert signature_options(Loss) == ["soft_label"]
    assert Loss(soft_label=True).options == {"soft_label": True}


def test_help_shows_the_losses_own_docstrings():
    for name in ("DiceLoss", "DiceCELoss", "TverskyLoss", "LeafDiceLoss", "MarginalCrossEntropyLoss"):
        text = pydoc.render_doc(getattr(phidice, name), renderer=pydoc.plaintext)
        assert "Initialize internal Module state" not in text, name  # nn.Module.__init__'s
        assert "Define the computation performed at every call" not in text, name  # nn.Module.forward's
        assert "eps_empty" in text or name == "MarginalCrossEntropyLoss"


def test_a_users_subclass_shows_its_own_signature():
    class Mine(phidice.DiceLoss):
        def __init__(self, weight: float = 1.0):
            super().__init__("BI")

    assert list(inspect.signature(Mine).parameters) == ["weight"]
    assert list(inspect.signature(phidice.DiceLoss).parameters)[:2] == ["phi", "eps"]
