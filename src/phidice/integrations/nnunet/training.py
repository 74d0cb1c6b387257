"""The nnU-Net v2 trainer classes. Each overrides only what the loss needs:

* ``_build_loss``: nnU-Net's loss through phidice — the deep-supervision weights are those of nnU-Net's own
  ``_build_loss`` (read from the loss it builds), the terms those of :mod:`.loss`; each level's loss is
  ``torch.compile``'d exactly when nnU-Net compiles its ``loss.dc`` (``_do_i_compile``: ``nnUNet_compile``,
  never on CPU, MPS or Windows);
* ``initialize``: reads ``annotated_labels.json`` (missing-label trainers) and logs the loss;
* ``on_train_start``: for ε = "auto", draws batches from the trainer's own training loader and measures
  E[Σy] per deep-supervision level and channel (all-reduced under DDP), then rebuilds the loss;
* ``train_step`` / ``validation_step``: hand the batch's case keys to the loss (missing-label trainers);
* ``save_checkpoint`` / ``load_checkpoint``: keep the resolved options, the measured ε and the annotations in
  the checkpoint (``checkpoint["init_args"]["phidice"]``), restore ε on ``--c``, and refuse to continue a run
  whose options changed;
* ``on_train_epoch_start`` / ``on_validation_epoch_start`` / ``on_epoch_end``: a :class:`phidice.GradientMonitor`
  on the training batches, logged per epoch (:mod:`.monitor`; ``PHIDICE_MONITOR=0`` turns it off).

``__init__`` keeps nnU-Net's explicit signature: nnU-Net records its arguments through ``inspect``.
"""

from __future__ import annotations

import os
from time import time
from typing import Any

import numpy as np
import torch

import phidice
from phidice.diagnostics.monitor import GradientMonitor
from phidice.integrations.nnunet import INSTALL_HINT
from phidice.integrations.nnunet.annotations import Annotations, find_annotation_file, read_annotations
from phidice.integrations.nnunet.loss import PhiDiceNNUNetLoss, checked_options
from phidice.integrations.nnunet.monitor import (
    build_monitor,
    epoch_lines,
    log_to_nnunet,
    monitor_enabled,
    write_outputs,
)
from phidice.integrations.nnunet.patch_epsilon import PatchVolumes, epsilon_from_totals
from phidice.integrations.nnunet.task import NNUNetTask

try:
    from nnunetv2.paths import nnUNet_raw
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
except ModuleNotFoundError as err:  # nnunetv2 installed without its dependencies (e.g. pip --no-deps)
    raise ImportError(
        f"nnU-Net's trainer cannot be imported: module {err.name!r} is missing (nnunetv2 installed "
        f"without its dependencies?): {INSTALL_HINT}"
    ) from err

__all__ = [
    "nnUNetTrainerPhiDice",
    "nnUNetTrainerPhiDice_I",
    "nnUNetTrainerPhiDice_BI",
    "nnUNetTrainerPhiDice_Ieps",
    "nnUNetTrainerPhiDice_Leaf",
    "nnUNetTrainerPhiDice_Marginal",
]


class nnUNetTrainerPhiDice(nnUNetTrainer):
    """nnU-Net's Dice + CE through phidice: Φ = BI when the configuration says ``batch_dice``, else I;
    ε = 1e-5; background left out (label training) or every region channel (region training, sigmoid);
    nnU-Net's ignore label and deep-supervision weights; ``sync_batch`` under DDP (exact global-batch Dice).

    Other Φ, ε, ``eps_empty``, Dice-only etc.: a ``"phidice"`` entry in the plans configuration
    (:mod:`phidice.integrations.nnunet.options`).
    """

    dataset_class: Any  # nnU-Net's, set in nnUNetTrainer.__init__ (None until a dataset is found)

    phidice_fixed: dict = {}
    phidice_defaults: dict = {}
    phidice_missing: str | None = None

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.phidice_task = NNUNetTask.from_label_manager(
            self.label_manager,
            batch_dice=bool(self.configuration_manager.batch_dice),
            label_dict=dataset_json.get("labels"),
        )
        self.phidice_source = self._phidice_plans_source()
        self.phidice_options = checked_options(
            self.configuration_manager.configuration.get("phidice"),
            self.phidice_task,
            is_ddp=self.is_ddp,
            missing=self.phidice_missing,
            fixed=self.phidice_fixed,
            defaults=self.phidice_defaults,
            trainer=type(self).__name__,
            source=self.phidice_source,
        )
        self.phidice_eps_levels: list | None = None
        self.phidice_eps_info: dict | None = None
        self.phidice_annotations: Annotations | None = None
        self.phidice_monitor: GradientMonitor | None = None
        self.phidice_monitor_history: list = []

    # ---------------------------------------------------------------------------------------------- loss
    def _phidice_plans_source(self) -> str:
        plans = self.plans_manager.plans_name + ".json"
        if self.preprocessed_dataset_folder_base is not None:
            plans = os.path.join(self.preprocessed_dataset_folder_base, plans)
        return f"plans file {plans!r}, configuration {self.configuration_name!r}"

    def _build_loss(self):
        stock = super()._build_loss()  # nnU-Net's loss: only its deep-supervision weights are used
        weights = tuple(stock.weight_factors) if isinstance(stock, DeepSupervisionWrapper) else None
        loss = PhiDiceNNUNetLoss(
            self.phidice_options,
            self.phidice_task,
            weights=weights,
            eps_levels=self.phidice_eps_levels,
            annotation_source="" if self.phidice_annotations is None else self.phidice_annotations.path,
        )
        if self._do_i_compile():  # nnU-Net's own decision (nnUNet_compile, device, OS): where it compiles loss.dc
            loss.compile_levels()
        return loss

    def phidice_record(self) -> dict:
        """What the checkpoint keeps: options, their source, measured ε, annotations, versions."""
        rec: dict[str, Any] = {
            "phidice_version": phidice.__version__,
            "trainer": type(self).__name__,
            "options": self.phidice_options.configured(),
            "source": self.phidice_source,
            "eps_measured": None if self.phidice_eps_levels is None else [list(e) for e in self.phidice_eps_levels],
            "eps_measurement": self.phidice_eps_info,
            "annotations": None if self.phidice_annotations is None else self.phidice_annotations.record(),
        }
        if isinstance(self.loss, PhiDiceNNUNetLoss):
            rec["loss"] = self.loss.describe()
            rec["loss_compiled"] = self.loss.compiled
        rec["monitor"] = [dict(h) for h in self.phidice_monitor_history]
        return rec

    def _phidice_log(self) -> None:
        self.print_to_log_file(
            f"phidice {phidice.__version__}: {type(self).__name__} loss {self.loss.describe()}",
            also_print_to_console=True,
        )
        self.print_to_log_file(
            f"phidice options (from {self.phidice_source}, trainer defaults otherwise): "
            f"{self.phidice_options.configured()}",
            also_print_to_console=True,
        )
        if isinstance(self.loss, PhiDiceNNUNetLoss):
            self.print_to_log_file(
                f"phidice: the Dice term is 1 − DSC (nnU-Net's is −DSC): logged losses are "
                f"{self.loss.dice_offset:g} above nnU-Net's for the same outputs; gradients "
                f"are the same",
                also_print_to_console=False,
            )

    # ------------------------------------------------------------------------------------- annotations
    def _phidice_load_annotations(self) -> Annotations:
        dataset = self.plans_manager.dataset_name
        path = find_annotation_file(
            dataset,
            raw_root=nnUNet_raw.get(),
            preprocessed_root=os.path.dirname(self.preprocessed_dataset_folder_base)
            if self.preprocessed_dataset_folder_base
            else None,
        )
        case_ids = None
        if self.preprocessed_dataset_folder is not None and os.path.isdir(self.preprocessed_dataset_folder):
            case_ids = self.dataset_class.get_identifiers(self.preprocessed_dataset_folder)
        ann = read_annotations(path, self.phidice_task, case_ids=case_ids)
        if self.phidice_task.regions:
            empty = [c for c in ann.cases if not any(ann.channel_flags(c, self.phidice_task))]
            if empty:
                raise ValueError(
                    f"{path}: case(s) {empty[:8]} annotate no region, so they carry no label "
                    f"information for region-based training; leave them out of the training split "
                    f"(splits_final.json)"
                )
        self.print_to_log_file(
            f"phidice: {len(ann.cases)} partially annotated case(s) from {path} "
            f"(sha256 {ann.sha256[:12]}); cases not listed annotate every label",
            also_print_to_console=True,
        )
        return ann

    def _phidice_set_batch(self, batch: dict) -> None:
        if self.phidice_missing is None or self.phidice_annotations is None:
            return
        keys = [str(k) for k in batch["keys"]]
        self.loss.set_batch(keys, self.phidice_annotations.rows(keys, self.phidice_task, device=self.device))

    # -------------------------------------------------------------------------------- nnU-Net hooks
    def initialize(self):
        if self.phidice_missing is not None and self.phidice_annotations is None:
            from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

            if (
                self.dataset_class is None
                and self.preprocessed_dataset_folder is not None
                and os.path.isdir(self.preprocessed_dataset_folder)
            ):
                self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
            self.phidice_annotations = self._phidice_load_annotations()
        super().initialize()
        self._phidice_log()

    def on_train_start(self):
        super().on_train_start()
        if self.phidice_options.eps_auto and self.phidice_eps_levels is None:
            self._phidice_measure_eps()
            self.loss = self._build_loss()
            self._phidice_log()
        self._phidice_start_monitor()

    # ----------------------------------------------------------------------------------------- monitor
    def _phidice_start_monitor(self) -> None:
        if not monitor_enabled() or not isinstance(self.loss, PhiDiceNNUNetLoss):
            return
        spacing = [float(s) for s in self.configuration_manager.spacing]
        self.phidice_monitor = build_monitor(self.loss, spacing)
        self.phidice_monitor.history = self.phidice_monitor_history
        self.print_to_log_file(
            f"phidice: GradientMonitor on {type(self.phidice_monitor.loss).__name__} (full "
            f"resolution, training batches); PHIDICE_MONITOR=0 turns it off",
            also_print_to_console=False,
        )

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        if self.phidice_monitor is not None:
            self.phidice_monitor.reset()
            self.phidice_monitor.attach()

    def on_validation_epoch_start(self):
        if self.phidice_monitor is not None:
            self.phidice_monitor.detach()
        super().on_validation_epoch_start()

    def on_epoch_end(self):
        m = self.phidice_monitor
        if m is not None:
            m.detach()
            result = m.epoch_end(epoch=self.current_epoch)
            for line in epoch_lines(result, m):
                self.print_to_log_file(line)
            log_to_nnunet(self.logger, result, self.current_epoch)
            if self.local_rank == 0:
                write_outputs(self.output_folder, m.history)
        super().on_epoch_end()

    def _phidice_measure_eps(self) -> None:
        opts, task = self.phidice_options, self.phidice_task
        n = opts.eps_batches
        self.print_to_log_file(
            f"phidice: measuring ε = E[Σy] on {n} training batches from the data loader "
            f"(patches as the network sees them)",
            also_print_to_console=True,
        )
        vols, start = PatchVolumes(task), time()
        for i in range(n):
            batch = next(self.dataloader_train)
            ann = None
            if self.phidice_missing is not None and self.phidice_annotations is not None:
                ann = self.phidice_annotations.rows([str(k) for k in batch["keys"]], task)
            vols.add(batch["target"], ann)
            if (i + 1) % 25 == 0 and i + 1 < n:
                self.print_to_log_file(
                    f"phidice: ε batches {i + 1}/{n} ({time() - start:.1f} s)", also_print_to_console=True
                )
        sums, counts = vols.totals()
        if self.is_ddp:  # every rank measured its own batches: the same ε everywhere
            both = (
                phidice.distributed.all_reduce_sum(
                    torch.as_tensor(np.stack([sums, counts]), dtype=torch.float64, device=self.device)
                )
                .cpu()
                .numpy()
            )
            sums, counts = both[0], both[1]
        batch_in_phi = 1
        if opts.phi in ("BI", "BCI"):  # E[Σ_φ y] with φ spanning the (global, under sync_batch) batch
            batch_in_phi = int(self.configuration_manager.batch_size) if opts.sync_batch else int(self.batch_size)
        names = [str(lab if len(lab) > 1 else lab[0]) for lab in task.channel_labels]
        self.phidice_eps_levels = epsilon_from_totals(sums, counts, batch_in_phi=batch_in_phi, names=names)
        self.phidice_eps_info = {
            "batches_per_rank": n,
            "images": counts[0].tolist(),
            "mean_volume": (sums / counts).tolist(),
            "batch_in_phi": batch_in_phi,
            "seconds": round(time() - start, 2),
        }
        zero = [names[c] for c in np.flatnonzero(np.asarray(self.phidice_eps_levels[0]) == 0)]
        if zero:
            self.print_to_log_file(
                f"phidice: WARNING channel(s) {zero} never present in the sampled patches: their ε is 0",
                also_print_to_console=True,
            )
        self.print_to_log_file(
            f"phidice: ε per deep-supervision level and channel (Φ = {opts.phi}, "
            f"{int(counts[0].max())} images, {time() - start:.1f} s): "
            f"{[[round(v, 3) for v in e] for e in self.phidice_eps_levels]}",
            also_print_to_console=True,
        )

    def train_step(self, batch: dict) -> dict:
        self._phidice_set_batch(batch)
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        self._phidice_set_batch(batch)
        return super().validation_step(batch)

    def save_checkpoint(self, filename: str) -> None:
        self.my_init_kwargs["phidice"] = self.phidice_record()
        super().save_checkpoint(filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        rec = self.my_init_kwargs.get("phidice") if isinstance(self.my_init_kwargs, dict) else None
        where = filename_or_checkpoint if isinstance(filename_or_checkpoint, str) else "the checkpoint"
        if rec is None:
            self.print_to_log_file(
                f"phidice: WARNING {where} holds no phidice record (not written by a phidice "
                f"trainer); the loss is built from the current options",
                also_print_to_console=True,
            )
            return
        self.phidice_monitor_history = [dict(h) for h in rec.get("monitor", [])]
        now = self.phidice_options.configured()
        if rec.get("options") != now:
            raise ValueError(
                f"{where} was trained with phidice options {rec.get('options')} ({rec.get('source')}); "
                f"the {self.phidice_source} now gives {now}. Restore that configuration, or train a "
                f"new configuration (another name) instead of continuing this run"
            )
        if self.phidice_options.eps_auto and rec.get("eps_measured") is not None:
            self.phidice_eps_levels = [tuple(e) for e in rec["eps_measured"]]
            self.phidice_eps_info = rec.get("eps_measurement")
            self.loss = self._build_loss()
            self.print_to_log_file(
                f"phidice: ε restored from {where}: {self.loss.describe()}", also_print_to_console=True
            )


class nnUNetTrainerPhiDice_I(nnUNetTrainerPhiDice):
    """nnU-Net's Dice + CE with Φ = I (one Dice per image and class), ε = 1e-5."""

    phidice_fixed = {"phi": "I"}


class nnUNetTrainerPhiDice_BI(nnUNetTrainerPhiDice):
    """nnU-Net's Dice + CE with Φ = BI (one Dice per class over the batch; global batch under DDP), ε = 1e-5."""

    phidice_fixed = {"phi": "BI"}


class nnUNetTrainerPhiDice_Ieps(nnUNetTrainerPhiDice):
    """Φ = I with ε = E[Σy] per class, measured on training patches before training (logged, checkpointed):
    empty maps get a gradient of order 1/E[Σy], so the network learns to predict them empty."""

    phidice_fixed = {"phi": "I", "eps": "auto"}


class nnUNetTrainerPhiDice_Leaf(nnUNetTrainerPhiDice):
    """Leaf Dice + marginal CE (Fidon et al. 2021) for partially annotated cases (``annotated_labels.json``):
    an unannotated class of a case leaves that case's Dice, and its CE is marginalised into the background."""

    phidice_missing = "leaf"


class nnUNetTrainerPhiDice_Marginal(nnUNetTrainerPhiDice):
    """Marginal Dice + marginal CE (Shi et al. 2021) for partially annotated cases: an unannotated class's
    probability joins the background. The background Dice is included by default (without it the marginal
    Dice equals the leaf Dice)."""

    phidice_missing = "marginal"
    phidice_defaults = {"include_background": True}
