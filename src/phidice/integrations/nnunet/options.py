"""The ``"phidice"`` entry of an nnU-Net plans configuration: which Φ, ε and terms the trainers use.

A plans configuration (``configurations → <name>`` in ``nnUNetPlans.json``) may hold::

    "phidice": {"phi": "BI", "eps": 1e-5, "eps_empty": 8789, "lambda_ce": 0}

nnU-Net resolves ``inherits_from``, so a new configuration that inherits from ``3d_fullres`` and adds a
``"phidice"`` entry (and e.g. another ``batch_size``) trains on the same preprocessed data under its own
results folder (``phidice nnunet add-config`` writes one). Keys:

=====================  ==========================================================================================
``phi``                ``"auto"`` (BI when the configuration says ``batch_dice``, else I — nnU-Net's rule), I, CI,
                       BI, BCI
``eps``                ε: a number, one number per output channel, or ``"auto"`` — ε = E[Σ_φ y] measured on
                       training patches drawn from the trainer's own data loader (per deep-supervision level)
``eps_nr``/``eps_dr``  ε of the numerator / denominator only
``eps_empty``          ε for subsets φ whose target is empty
``lambda_dice``        weight of the Dice term (nnU-Net's ``weight_dice``; default 1)
``lambda_ce``          weight of the cross-entropy (nnU-Net's ``weight_ce``; default 1; 0 = Dice only)
``include_background`` Dice over the background channel too (default False; region training has no background)
``sync_batch``         under DDP, Φ ∋ B means the global batch and the CE mean is global (default: on under DDP)
``eps_batches``        batches drawn for ``eps: "auto"`` (default 100)
``coarse_empty``       what a coarse deep-supervision level does with a structure its downsampled target lost:
                       ``"nnunet"`` (default: the target as nnU-Net's data loader made it), ``"missing"`` (the
                       class leaves that level for that case) or ``"maxpool"`` (the level's target max-pooled
                       from the full-resolution one); see :class:`phidice.DeepSupervisionLoss`
others                 every other option of :class:`~phidice.core.config.DiceConfig` (:data:`DICE_KEYS`: ``squared``,
                       ``class_weights``, ``weighting``, ``empty``, ``fused``, …) and of
                       :class:`~phidice.core.config.CEConfig` (:data:`CE_KEYS`: ``ce_weight``,
                       ``label_smoothing``), passed to the phidice loss; ``activation``, ``ignore_index`` and
                       ``reduction`` follow the task (:data:`TRAINER_KEYS`)
=====================  ==========================================================================================

The keys come from the fields of the two configurations, and every value is checked by building them, so
an option added to the configurations is a plans key too. The loss is then built and run once on a tiny
input (:func:`phidice.integrations.nnunet.loss.checked_options`), so a bad option fails when the trainer is
created, with the plans file and configuration named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phidice.core.config import CEConfig, DiceConfig
from phidice.integrations.nnunet.task import NNUNetTask
from phidice.missing.deep_supervision import COARSE_EMPTY

PHI_CHOICES = ("auto", "I", "CI", "BI", "BCI")
# the keys with nnU-Net's own defaults and rules (Φ "auto", ε "auto" and its batches, the regions rule, DDP)
OWN_KEYS = ("phi", "eps", "lambda_dice", "lambda_ce", "include_background", "sync_batch", "eps_batches", "coarse_empty")
# set by the trainer from the task (softmax or sigmoid, the ignore label), or fixed by it (a mean; Dice)
TRAINER_KEYS = ("activation", "ignore_index", "reduction", "overlap")
DICE_KEYS = tuple(f.name for f in dataclasses.fields(DiceConfig) if f.name not in OWN_KEYS + TRAINER_KEYS)
CE_KEYS = tuple(f.name for f in dataclasses.fields(CEConfig) if f.name not in OWN_KEYS)
ALLOWED_KEYS = OWN_KEYS + DICE_KEYS + CE_KEYS
EPS_KEYS = ("eps", "eps_nr", "eps_dr", "eps_empty")
MISSING_MODES = (None, "leaf", "marginal")
NNUNET_EPS = 1e-5  # nnU-Net's smooth in nnUNetTrainer._build_loss
DEFAULT_EPS_BATCHES = 100


@dataclass(frozen=True)
class LossOptions:
    """Resolved loss options of one trainer run (Φ final; ε a number, a per-channel tuple or ``"auto"``)."""

    phi: str
    eps: float | tuple[float, ...] | str
    lambda_dice: float
    lambda_ce: float
    include_background: bool
    sync_batch: bool
    missing: str | None
    eps_batches: int
    dice_kwargs: dict = field(default_factory=dict)
    ce_kwargs: dict = field(default_factory=dict)
    source: str = ""
    coarse_empty: str = "nnunet"

    @property
    def eps_auto(self) -> bool:
        return isinstance(self.eps, str)

    def configured(self) -> dict:
        """The options as a JSON-able dict (what a run is checked against when it continues)."""
        out: dict[str, Any] = {
            "phi": self.phi,
            "eps": list(self.eps) if isinstance(self.eps, tuple) else self.eps,
            "lambda_dice": self.lambda_dice,
            "lambda_ce": self.lambda_ce,
            "include_background": self.include_background,
            "missing": self.missing,
        }
        if self.eps_auto:
            out["eps_batches"] = self.eps_batches
        for k, v in {**self.dice_kwargs, **self.ce_kwargs}.items():
            out[k] = list(v) if isinstance(v, tuple) else v
        if self.coarse_empty != "nnunet":
            out["coarse_empty"] = self.coarse_empty
        return out


def _fail(source: str, msg: str) -> ValueError:
    return ValueError(f"{source}: {msg}" if source else msg)


def _eps_value(value, name: str, source: str, *, allow_auto: bool):
    """ε as the config takes it, or ``"auto"`` (nnU-Net's own value of ``eps``); the config checks numbers."""
    if isinstance(value, str):
        if allow_auto and value == "auto":
            return value
        alternatives = ' or "auto"' if allow_auto else ""
        raise _fail(
            source,
            f"phidice option {name!r} must be a number, a list of numbers (one per output channel)"
            f"{alternatives}; got {value!r}",
        )
    return value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _check_coarse_empty(value, source: str) -> None:
    if value not in COARSE_EMPTY:
        raise _fail(source, f"phidice option 'coarse_empty' must be one of {', '.join(COARSE_EMPTY)}; got {value!r}")


def resolve_options(
    raw: Mapping | None,
    task: NNUNetTask,
    *,
    is_ddp: bool = False,
    missing: str | None = None,
    fixed: Mapping | None = None,
    defaults: Mapping | None = None,
    trainer: str = "",
    source: str = "",
) -> LossOptions:
    """Merge nnU-Net's loss (the base), the trainer's ``defaults`` and ``fixed`` options and the plans' ``raw``.

    ``fixed`` options belong to the trainer's name (``nnUNetTrainerPhiDice_BI`` fixes Φ); the plans may repeat
    them but not change them. ``source`` names the plans file and configuration in error messages. The
    values are checked by :class:`DiceConfig` and :class:`CEConfig`; the rules checked here are nnU-Net's own.
    """
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}; got {missing!r}")
    raw = _read_entry(raw, source)
    _check_fixed(raw, dict(fixed or {}), trainer, source)
    merged: dict[str, Any] = {
        "phi": "auto",
        "eps": NNUNET_EPS,
        "lambda_dice": 1.0,
        "lambda_ce": 1.0,
        "include_background": task.regions,
        "sync_batch": bool(is_ddp),
        "eps_batches": DEFAULT_EPS_BATCHES,
        "coarse_empty": "nnunet",
    }
    merged.update(defaults or {})
    merged.update(raw)
    merged.update(fixed or {})
    merged["phi"] = _resolve_phi(merged["phi"], task, source)
    for name in EPS_KEYS:
        if merged.get(name) is not None:
            merged[name] = _eps_value(merged[name], name, source, allow_auto=name == "eps")
    _check_rules(merged, task, missing, source)
    _check_coarse_empty(merged["coarse_empty"], source)
    config, ce = _configs(merged, task, source)
    dice_kwargs = {k: getattr(config, k) for k in DICE_KEYS if k in merged}
    ce_kwargs = {k: getattr(ce, k) for k in CE_KEYS if k in merged}
    return LossOptions(
        phi=config.phi.value,
        eps=merged["eps"] if merged["eps"] == "auto" else config.eps,
        lambda_dice=ce.lambda_dice,
        lambda_ce=ce.lambda_ce,
        include_background=config.include_background,
        sync_batch=config.sync_batch,
        missing=missing,
        eps_batches=merged["eps_batches"],
        dice_kwargs=dice_kwargs,
        ce_kwargs=ce_kwargs,
        source=source,
        coarse_empty=merged["coarse_empty"],
    )


def _read_entry(raw, source: str) -> dict:
    """The plans' ``"phidice"`` entry as a dict (JSON lists as tuples); an unknown key is an error."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _fail(source, f"the 'phidice' entry must be a JSON object (key → value); got {type(raw).__name__}")
    raw = {str(k): _tupled(v) for k, v in raw.items()}
    unknown = sorted(set(raw) - set(ALLOWED_KEYS))
    if unknown:
        raise _fail(source, f"unknown phidice option(s) {unknown}; allowed: {', '.join(ALLOWED_KEYS)}")
    return raw


def _check_fixed(raw: dict, fixed: dict, trainer: str, source: str) -> None:
    """The plans may repeat the options the trainer's name fixes, not change them."""
    for k, v in fixed.items():
        if k in raw and raw[k] != v and not (k == "phi" and str(raw[k]).upper() == v):
            raise _fail(
                source,
                f"{trainer or 'this trainer'} fixes {k}={v!r}, but the configuration sets {k}="
                f"{raw[k]!r}; use nnUNetTrainerPhiDice to choose {k} freely",
            )


def _resolve_phi(phi, task: NNUNetTask, source: str) -> str:
    """Φ by name, any case; ``"auto"`` is nnU-Net's rule (BI when the configuration says ``batch_dice``)."""
    if not isinstance(phi, str) or phi.upper() not in {p.upper() for p in PHI_CHOICES}:
        raise _fail(source, f"phidice option 'phi' must be one of {', '.join(PHI_CHOICES)}; got {phi!r}")
    phi = phi.upper()
    if phi == "AUTO":
        return "BI" if task.batch_dice else "I"
    return phi


def _check_rules(merged: dict, task: NNUNetTask, missing, source: str) -> None:
    """nnU-Net's own rules: the regions need their background, ε batches are counted, a loss is left."""
    for name in ("include_background", "sync_batch"):
        if not isinstance(merged[name], bool):
            raise _fail(source, f"phidice option {name!r} must be true or false; got {merged[name]!r}")
    if task.regions and not merged["include_background"]:
        raise _fail(
            source,
            "region-based training has no background channel (every sigmoid channel is a region): "
            "include_background must be true",
        )
    eps_batches = merged["eps_batches"]
    if isinstance(eps_batches, bool) or not isinstance(eps_batches, int) or eps_batches < 1:
        raise _fail(source, f"phidice option 'eps_batches' must be an integer ≥ 1; got {eps_batches!r}")
    if missing == "marginal" and task.regions:
        raise _fail(
            source,
            "the marginal Dice sums the probabilities of mutually exclusive classes into the "
            "background; region-based (sigmoid) training has none — use nnUNetTrainerPhiDice_Leaf",
        )
    lambdas = (merged["lambda_dice"], merged["lambda_ce"])
    if lambdas == (0, 0):
        raise _fail(source, "lambda_dice and lambda_ce are both 0: there is no loss left")
    ce_set = sorted(k for k in CE_KEYS if k in merged)
    if merged["lambda_ce"] == 0 and ce_set:
        raise _fail(source, f"{ce_set} set but lambda_ce is 0 (Dice only): remove them or set lambda_ce")


def _configs(merged: dict, task: NNUNetTask, source: str) -> tuple[DiceConfig, CEConfig]:
    """The options checked by the configurations the loss is built from (``eps: "auto"`` stands in as 1)."""
    dice = {k: merged[k] for k in ("phi", "eps", "include_background", "sync_batch", *DICE_KEYS) if k in merged}
    if dice["eps"] == "auto":
        dice["eps"] = 1.0
    ce = {k: merged[k] for k in ("lambda_dice", "lambda_ce", *CE_KEYS) if k in merged}
    try:
        return DiceConfig(activation=task.activation, **dice), CEConfig(**ce)
    except (ValueError, TypeError) as err:
        raise _fail(source, f"invalid phidice options: {err}") from err
