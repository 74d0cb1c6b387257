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
others                 passed to the phidice loss: ``squared``, ``class_weights``, ``weighting``, ``empty``,
                       ``fused``, ``ce_weight``, ``label_smoothing``
=====================  ==========================================================================================

Every value is checked by building the phidice loss and running it once on a tiny input, so a bad option
fails when the trainer is created, with the plans file and configuration named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from phidice.integrations.nnunet.task import NNUNetTask
from phidice.missing.deep_supervision import COARSE_EMPTY

PHI_CHOICES = ("auto", "I", "CI", "BI", "BCI")
DICE_KEYS = ("eps_nr", "eps_dr", "eps_empty", "squared", "class_weights", "weighting", "empty", "fused")
CE_KEYS = ("ce_weight", "label_smoothing")
OWN_KEYS = ("phi", "eps", "lambda_dice", "lambda_ce", "include_background", "sync_batch", "eps_batches")
ALLOWED_KEYS = OWN_KEYS + DICE_KEYS + CE_KEYS + ("coarse_empty",)
MISSING_MODES = (None, "leaf", "marginal")
NNUNET_EPS = 1e-5  # nnU-Net's smooth in nnUNetTrainer._build_loss
DEFAULT_EPS_BATCHES = 100


@dataclass(frozen=True)
class LossOptions:
    """Resolved loss options of one trainer run (Φ final; ε a number, a per-channel tuple or ``"auto"``)."""

    phi: str
    eps: "float | tuple[float, ...] | str"
    lambda_dice: float
    lambda_ce: float
    include_background: bool
    sync_batch: bool
    missing: "str | None"
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
            "phi": self.phi, "eps": list(self.eps) if isinstance(self.eps, tuple) else self.eps,
            "lambda_dice": self.lambda_dice, "lambda_ce": self.lambda_ce,
            "include_background": self.include_background, "missing": self.missing,
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


def _number(value, name: str, source: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise _fail(source, f"phidice option {name!r} must be a finite number ≥ {minimum:g}; got {value!r}")
    return float(value)


def _eps_value(value, name: str, source: str, *, allow_auto: bool):
    if isinstance(value, str):
        if allow_auto and value == "auto":
            return value
        alternatives = ' or "auto"' if allow_auto else ""
        raise _fail(source, f"phidice option {name!r} must be a number, a list of numbers (one per output channel)"
                            f"{alternatives}; got {value!r}")
    if isinstance(value, (list, tuple)):
        return tuple(_number(v, name, source) for v in value)
    return _number(value, name, source)


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _check_coarse_empty(value, source: str) -> None:
    if value not in COARSE_EMPTY:
        raise _fail(source, f"phidice option 'coarse_empty' must be one of {', '.join(COARSE_EMPTY)}; got {value!r}")


def resolve_options(raw: "Mapping | None", task: NNUNetTask, *, is_ddp: bool = False, missing: "str | None" = None,
                    fixed: "Mapping | None" = None, defaults: "Mapping | None" = None, trainer: str = "",
                    source: str = "") -> LossOptions:
    """Merge nnU-Net's loss (the base), the trainer's ``defaults`` and ``fixed`` options and the plans' ``raw``.

    ``fixed`` options belong to the trainer's name (``nnUNetTrainerPhiDice_BI`` fixes Φ); the plans may repeat
    them but not change them. ``source`` names the plans file and configuration in error messages.
    """
    fixed = dict(fixed or {})
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _fail(source, f"the 'phidice' entry must be a JSON object (key → value); got {type(raw).__name__}")
    raw = {str(k): _tupled(v) for k, v in raw.items()}
    unknown = sorted(set(raw) - set(ALLOWED_KEYS))
    if unknown:
        raise _fail(source, f"unknown phidice option(s) {unknown}; allowed: {', '.join(ALLOWED_KEYS)}")
    for k, v in fixed.items():
        if k in raw and raw[k] != v and not (k == "phi" and str(raw[k]).upper() == v):
            raise _fail(source, f"{trainer or 'this trainer'} fixes {k}={v!r}, but the configuration sets {k}="
                                f"{raw[k]!r}; use nnUNetTrainerPhiDice to choose {k} freely")
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}; got {missing!r}")

    merged: dict[str, Any] = {
        "phi": "auto", "eps": NNUNET_EPS, "lambda_dice": 1.0, "lambda_ce": 1.0,
        "include_background": task.regions, "sync_batch": bool(is_ddp), "eps_batches": DEFAULT_EPS_BATCHES,
        "coarse_empty": "nnunet"}
    merged.update(defaults or {})
    merged.update(raw)
    merged.update(fixed)

    phi = merged["phi"]
    if not isinstance(phi, str) or phi.upper() not in {p.upper() for p in PHI_CHOICES}:
        raise _fail(source, f"phidice option 'phi' must be one of {', '.join(PHI_CHOICES)}; got {phi!r}")
    phi = phi.upper()
    if phi == "AUTO":
        phi = "BI" if task.batch_dice else "I"
    eps = _eps_value(merged["eps"], "eps", source, allow_auto=True)
    lam_dice = _number(merged["lambda_dice"], "lambda_dice", source)
    lam_ce = _number(merged["lambda_ce"], "lambda_ce", source)
    if lam_dice == 0 and lam_ce == 0:
        raise _fail(source, "lambda_dice and lambda_ce are both 0: there is no loss left")
    for name in ("include_background", "sync_batch"):
        if not isinstance(merged[name], bool):
            raise _fail(source, f"phidice option {name!r} must be true or false; got {merged[name]!r}")
    if task.regions and not merged["include_background"]:
        raise _fail(source, "region-based training has no background channel (every sigmoid channel is a region): "
                            "include_background must be true")
    eps_batches = merged["eps_batches"]
    if isinstance(eps_batches, bool) or not isinstance(eps_batches, int) or eps_batches < 1:
        raise _fail(source, f"phidice option 'eps_batches' must be an integer ≥ 1; got {eps_batches!r}")
    if missing == "marginal" and task.regions:
        raise _fail(source, "the marginal Dice sums the probabilities of mutually exclusive classes into the "
                            "background; region-based (sigmoid) training has none — use nnUNetTrainerPhiDice_Leaf")
    _check_coarse_empty(merged["coarse_empty"], source)
    dice_kwargs = {k: merged[k] for k in DICE_KEYS if k in merged}
    for k in ("eps_nr", "eps_dr", "eps_empty"):
        if k in dice_kwargs and dice_kwargs[k] is not None:
            dice_kwargs[k] = _eps_value(dice_kwargs[k], k, source, allow_auto=False)
    ce_kwargs = {k: merged[k] for k in CE_KEYS if k in merged}
    if lam_ce == 0 and ce_kwargs:
        raise _fail(source, f"{sorted(ce_kwargs)} set but lambda_ce is 0 (Dice only): remove them or set lambda_ce")
    opts = LossOptions(phi=phi, eps=eps, lambda_dice=lam_dice, lambda_ce=lam_ce,
                       include_background=merged["include_background"], sync_batch=merged["sync_batch"],
                       missing=missing, eps_batches=eps_batches, dice_kwargs=dice_kwargs, ce_kwargs=ce_kwargs,
                       source=source, coarse_empty=merged["coarse_empty"])
    return opts
