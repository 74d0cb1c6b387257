"""nnU-Net's training loss through phidice: nnU-Net's targets, ignore label, regions and deep supervision.

One phidice loss per deep-supervision level (they differ only when ε is measured per level), combined with
nnU-Net's weights. Targets arrive as nnU-Net's data loader makes them:

* label training: (B, 1, *S) integer maps; the ignore label (if any) becomes phidice's ``ignore_index``;
  softmax; Dice + CE.
* region-based training: (B, R [+1], *S) one-hot maps, the last channel the ignore mask when the dataset has an
  ignore label; sigmoid; Dice + BCE. nnU-Net divides its masked BCE by the voxel count, not by voxels × R, so
  with an ignore label its BCE weighs R times the unmasked mean; λ_CE·R reproduces that.

The Dice term is 1 − DSC (phidice's convention); nnU-Net's is −DSC. The difference is the constant
λ_dice·Σ_levels w (= λ_dice with nnU-Net's normalised weights): same gradients, loss curves shifted by it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

import phidice
from phidice.integrations.nnunet.options import LossOptions, resolve_options
from phidice.integrations.nnunet.task import NNUNetTask
from phidice.losses.base import LossModule
from phidice.missing.deep_supervision import coarse_level, partial_of


class ScaledLoss(nn.Module):
    """``scale · loss(...)`` (a Dice-only loss with λ_dice ≠ 1)."""

    def __init__(self, loss: nn.Module, scale: float):
        super().__init__()
        self.loss, self.scale = loss, float(scale)

    def forward(self, *args, **kwargs):
        return self.scale * self.loss(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


def ce_scale(task: NNUNetTask) -> int:
    """Factor on λ_CE that reproduces nnU-Net's masked-BCE normalisation (R with regions and an ignore label)."""
    return task.num_channels if task.regions and task.ignore_label is not None else 1


def level_loss(opts: LossOptions, task: NNUNetTask, eps, *, sync_batch: bool | None = None) -> nn.Module:
    """The phidice loss of one resolution level (``eps``: a number or one value per output channel)."""
    kw = dict(
        phi=opts.phi,
        eps=eps,
        activation=task.activation,
        include_background=opts.include_background,
        sync_batch=opts.sync_batch if sync_batch is None else sync_batch,
        **opts.dice_kwargs,
    )
    if not task.regions and task.ignore_label is not None:
        kw["ignore_index"] = task.ignore_label
    if opts.lambda_ce == 0:
        cls = {None: phidice.DiceLoss, "leaf": phidice.LeafDiceLoss, "marginal": phidice.MarginalDiceLoss}[opts.missing]
        loss = cls(**kw)
        return loss if opts.lambda_dice == 1 else ScaledLoss(loss, opts.lambda_dice)
    cls = {None: phidice.DiceCELoss, "leaf": phidice.LeafDiceCELoss, "marginal": phidice.MarginalDiceCELoss}[
        opts.missing
    ]
    return cls(lambda_dice=opts.lambda_dice, lambda_ce=opts.lambda_ce * ce_scale(task), **opts.ce_kwargs, **kw)


def _coarse_loss(loss: nn.Module, dense: bool) -> nn.Module:
    """The leaf counterpart of a level loss (``ScaledLoss`` kept), without ``ignore_index`` for dense targets."""
    if isinstance(loss, ScaledLoss):
        return ScaledLoss(_coarse_loss(loss.loss, dense), loss.scale)
    return partial_of(cast(LossModule, loss), **({"ignore_index": None} if dense else {}))


def _dummy_target(task: NNUNetTask, B: int, shape: tuple) -> torch.Tensor:
    if task.regions:
        t = torch.zeros((B, task.num_channels + (task.ignore_label is not None), *shape), dtype=torch.bool)
        t[:, 0, 0, 0] = True
        return t
    t = torch.zeros((B, 1, *shape), dtype=torch.int16)
    t[:, 0, 0, 0] = task.num_channels - 1
    return t


def checked_options(raw, task: NNUNetTask, **kwargs) -> LossOptions:
    """:func:`~phidice.integrations.nnunet.options.resolve_options`, then the loss built and run once on a tiny
    input (:func:`probe_options`): a bad option fails when the trainer starts, naming the plans file."""
    opts = resolve_options(raw, task, **kwargs)
    probe_options(opts, task)
    return opts


def probe_options(opts: LossOptions, task: NNUNetTask) -> None:
    """Build the loss of ``opts`` and run it once on a tiny input: ValueError (naming ``opts.source``) if it fails."""
    eps = 1.0 if opts.eps_auto else opts.eps
    if "fused" not in opts.dice_kwargs:  # the reference path checks the same options without a kernel's first call
        opts = dataclasses.replace(opts, dice_kwargs={**opts.dice_kwargs, "fused": False})
    try:
        loss = PhiDiceNNUNetLoss(opts, task, eps_levels=[eps], sync_batch=False)
        x = torch.zeros((2, task.num_channels, 2, 2), dtype=torch.float32, requires_grad=True)
        if opts.missing is not None:
            loss.set_batch(["probe-0", "probe-1"], torch.ones((2, task.num_channels), dtype=torch.bool))
        value = loss(x, _dummy_target(task, 2, (2, 2)))
        value.backward()
    except (ValueError, TypeError) as err:
        where = f"{opts.source}: " if opts.source else ""
        raise ValueError(f"{where}invalid phidice options {opts.configured()}: {err}") from err


class PhiDiceNNUNetLoss(nn.Module):
    """nnU-Net's ``self.loss``: ``forward(output, target)``, lists of levels under deep supervision.

    ``weights`` are nnU-Net's deep-supervision weights (None without deep supervision); levels with weight 0
    are skipped, as in nnU-Net. ``eps_levels``: ε per level (for ``eps="auto"`` after measuring it); None uses
    ``opts.eps``. Missing-label losses need :meth:`set_batch` (the batch's case keys and (B, C) annotated
    flags) before each call; the trainers do that in ``train_step``/``validation_step``.
    """

    def __init__(
        self,
        opts: LossOptions,
        task: NNUNetTask,
        weights: Sequence[float] | None = None,
        eps_levels: Sequence | None = None,
        *,
        sync_batch: bool | None = None,
        annotation_source: str = "",
    ):
        super().__init__()
        n_levels = 1 if weights is None else len(weights)
        self.pending = opts.eps_auto and eps_levels is None
        if eps_levels is None:
            eps_levels = [1.0 if opts.eps_auto else opts.eps] * n_levels
        if len(eps_levels) != n_levels:
            raise ValueError(f"eps_levels has {len(eps_levels)} entries for {n_levels} deep-supervision level(s)")
        self.options, self.task = opts, task
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.eps_levels = [tuple(e) if isinstance(e, (list, tuple)) else e for e in eps_levels]
        self.levels = nn.ModuleList(level_loss(opts, task, e, sync_batch=sync_batch) for e in self.eps_levels)
        # coarse_empty="missing" / "maxpool": the levels' leaf counterparts (they take annotated flags; a max-pooled
        # target is a dense map whose ignored voxels come as a mask)
        self.coarse: nn.ModuleList | None = (
            None
            if opts.coarse_empty == "nnunet"
            else nn.ModuleList(_coarse_loss(loss, dense=opts.coarse_empty == "maxpool") for loss in self.levels)
        )
        self.annotation_source = annotation_source
        self.keys: list[str] | None = None
        self.annotated: torch.Tensor | None = None
        self.compiled = False

    def compile_levels(self, **compile_kwargs) -> PhiDiceNNUNetLoss:
        """``torch.compile`` the phidice loss of every level in place (``nn.Module.compile``: the modules keep
        their type, so the monitor and the checkpoint record see the same objects).

        nnU-Net compiles its Dice term, ``loss.dc``, inside the deep-supervision loss; a phidice level loss holds
        that term (with its CE, which shares the level's single pass over the volume), so the levels are what is
        compiled here, and the loop over the levels stays eager, as nnU-Net's ``DeepSupervisionWrapper`` does.
        """
        for loss in (*self.levels, *(self.coarse or ())):
            loss.compile(**compile_kwargs)
        self.compiled = True
        return self

    @property
    def dice_offset(self) -> float:
        """phidice − nnU-Net for the same outputs: λ_dice·Σ w over the levels used (1 − DSC vs −DSC)."""
        w = (1.0,) if self.weights is None else [w for w in self.weights if w != 0]
        return self.options.lambda_dice * float(sum(w))

    def set_batch(self, keys: Sequence[str], annotated: torch.Tensor | None) -> None:
        """The case keys of the next batch and their (B, C) annotated channels (missing-label losses)."""
        self.keys = [str(k) for k in keys]
        self.annotated = annotated

    def forward(self, output, target):
        if self.pending:
            raise RuntimeError(
                "phidice: eps='auto' is measured on training batches before training starts "
                "(nnUNetTrainerPhiDice.on_train_start); this loss has no measured ε yet"
            )
        if self.weights is None:
            if isinstance(output, (list, tuple)):
                raise ValueError("deep-supervision outputs (a list) but the loss was built without deep supervision")
            return self._level(0, output, target)
        if not isinstance(output, (list, tuple)) or not isinstance(target, (list, tuple)):
            raise ValueError(
                "deep supervision: output and target must be lists (one entry per resolution); got "
                f"{type(output).__name__} and {type(target).__name__}"
            )
        if not len(output) == len(target) == len(self.weights):
            raise ValueError(
                f"deep supervision: {len(output)} outputs and {len(target)} targets for {len(self.weights)} weights"
            )
        total = None
        for i, (w, o, t) in enumerate(zip(self.weights, output, target)):
            if w == 0:
                continue
            term = w * (
                self._level(i, o, t) if i == 0 or self.coarse is None else self._coarse_level(i, o, t, target[0])
            )
            total = term if total is None else total + term
        return total

    def _split(self, target: torch.Tensor):
        """(target, mask) with a region target's ignore channel turned into the mask."""
        if self.task.regions and self.task.ignore_label is not None:
            return target[:, :-1], target[:, -1:] == 0
        return target, None

    def _coarse_level(self, i: int, output: torch.Tensor, target: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """Level ``i`` under ``coarse_empty`` (:func:`phidice.missing.deep_supervision.coarse_level`)."""
        task = self.task
        (full, full_mask), (target, mask) = self._split(full), self._split(target)
        ignore = None if task.regions else task.ignore_label
        y, m, erased, _ = coarse_level(
            self.options.coarse_empty, full, target, output, task.activation, ignore, full_mask
        )
        if mask is not None and self.options.coarse_empty != "maxpool":
            m = mask
        ann = self._annotated_for(output) if self.options.missing is not None else None
        if erased is not None:
            ann = ~erased if ann is None else ann & ~erased
            nothing = ~ann.any(1)
            if bool(nothing.any()):  # every class of a case erased: the case leaves this level
                ann = ann | nothing.unsqueeze(1)
                keep = (~nothing).view(-1, *([1] * (output.ndim - 1))).expand(-1, 1, *output.shape[2:])
                m = keep if m is None else m & keep if m.dtype == torch.bool else m * keep.to(m.dtype)
        assert self.coarse is not None  # built whenever coarse_empty is not 'nnunet', the only caller's case
        return self.coarse[i](output, y, ann, mask=m)

    def _level(self, i: int, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        task, mask, ann = self.task, None, None
        if self.options.missing is not None:
            ann = self._annotated_for(output)
        if task.regions:
            expected = task.num_channels + (task.ignore_label is not None)
            if target.ndim != output.ndim or target.shape[1] != expected:
                what = f"{task.num_channels} regions" + (" + the ignore mask" if expected > task.num_channels else "")
                raise ValueError(
                    f"region-based training expects one-hot targets with {expected} channels ({what}); "
                    f"got shape {tuple(target.shape)} for output {tuple(output.shape)}"
                )
            if task.ignore_label is not None:
                mask = target[:, -1:] == 0
                target = target[:, :-1]
            if ann is not None:  # a region holding an unannotated label has an incomplete target: drop it
                view = ann.view(*ann.shape, *([1] * (target.ndim - 2)))
                target = target & view if target.dtype == torch.bool else target * view.to(target.dtype)
        loss = self.levels[i]
        if ann is None:
            return loss(output, target, mask=mask)
        try:
            return loss(output, target, ann, mask=mask)
        except ValueError as err:
            found = self._unannotated_present(target, ann, output.ndim)
            if found:
                listed = ", ".join(f"case {k!r} label {c}" for k, c in found[:6]) + (" ..." if len(found) > 6 else "")
                raise ValueError(
                    f"{self.annotation_source or 'the annotation file'} lists labels as not annotated that the "
                    f"cases' label maps contain ({listed}): label unannotated classes as background (0), or list "
                    f"them as annotated"
                ) from err
            raise

    def _annotated_for(self, output: torch.Tensor) -> torch.Tensor:
        ann = self.annotated
        if ann is None or self.keys is None:
            raise RuntimeError(
                "missing-label loss called without set_batch(keys, annotated): the trainer sets the "
                "batch's case keys before each step"
            )
        if tuple(ann.shape) != (output.shape[0], output.shape[1]):
            raise ValueError(
                f"annotated has shape {tuple(ann.shape)}; the output needs (B, C) = "
                f"{(output.shape[0], output.shape[1])}"
            )
        return ann.to(output.device)

    def _unannotated_present(self, target: torch.Tensor, ann: torch.Tensor, ndim: int) -> list[tuple[str, int]]:
        """(case key, label) of labels present in a case that does not annotate them (label training)."""
        if self.task.regions:
            return []
        lab = target[:, 0] if target.ndim == ndim else target
        found = []
        for b, c in (~ann).nonzero().tolist():
            if bool((lab[b] == c).any()):
                found.append((self.keys[b] if self.keys and b < len(self.keys) else f"#{b}", c))
        return found

    def describe(self) -> str:
        """One line for nnU-Net's log: the phidice loss, ε per level and the deep-supervision weights."""
        o = self.options
        name = (
            type(self.levels[0]).__name__
            if not isinstance(self.levels[0], ScaledLoss)
            else f"{o.lambda_dice:g}·{type(self.levels[0].loss).__name__}"
        )
        ce = (
            ""
            if o.lambda_ce == 0
            else f", λ_dice={o.lambda_dice:g}, λ_CE={o.lambda_ce:g}"
            + (f" (×{ce_scale(self.task)} for nnU-Net's masked BCE)" if ce_scale(self.task) != 1 else "")
        )

        def fmt(e):
            return f"{e:g}" if not isinstance(e, tuple) else "[" + ", ".join(f"{v:.6g}" for v in e) + "]"

        if self.pending:
            eps = "auto (not measured yet)"
        elif len(set(map(str, self.eps_levels))) == 1:
            eps = fmt(self.eps_levels[0])
        else:
            eps = "per level " + "; ".join(fmt(e) for e in self.eps_levels)
        ws = "none" if self.weights is None else "[" + ", ".join(f"{w:.4g}" for w in self.weights) + "]"
        extra = "".join(f", {k}={v!r}" for k, v in {**o.dice_kwargs, **o.ce_kwargs}.items())
        return (
            f"{name}(phi={o.phi}, eps={eps}, activation={self.task.activation}, include_background="
            f"{o.include_background}{ce}, sync_batch={o.sync_batch}{extra}); deep supervision weights {ws}"
            + ("; each level torch.compile'd" if self.compiled else "")
        )
