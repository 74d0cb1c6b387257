"""Losses of the grid and the training loop (one function, :func:`train_model`, ready for torchrun).

A configuration is a name from :data:`CONFIGS` — the paper's set-ups I, BI, I_ε and the two missing-label
baselines leaf and marginal Dice — plus a batch size and a labelling (full or partial). Every loss comes from
phidice's public API; I_ε takes ε = E[Σy] per class from :func:`phidice.estimate_epsilon` on the training
labels exactly as they are used for training (partial labels under partial labelling, as in the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import phidice
from phidice import distributed
from phidice.progress import progress as progress_bar

# the negligible ε of Φ = I and BI in the paper's experiments (the library's default is DEFAULT_EPS = 1e-5)
PAPER_EPS = 1e-7

# name -> (loss class name, Φ, uses the ε heuristic, needs the annotated-classes mask)
CONFIGS = {
    "I": ("DiceLoss", "I", False, False),
    "BI": ("DiceLoss", "BI", False, False),
    "I_eps": ("DiceLoss", "I", True, False),
    "leaf": ("LeafDiceLoss", "I", False, True),
    "marginal": ("MarginalDiceLoss", "I", False, True),
}
LABEL = {"I": "I", "BI": "BI", "I_eps": "I_ε", "leaf": "leaf", "marginal": "marginal"}


@dataclass(frozen=True)
class RunConfig:
    """One cell of the grid."""

    task: str  # "binary" | "multiclass"
    config: str  # key of CONFIGS
    batch_size: int
    labelling: str  # "full" | "partial"

    @property
    def key(self) -> str:
        return f"{self.task}_{self.config}_B{self.batch_size}_{self.labelling}"

    def __post_init__(self):
        if self.config not in CONFIGS:
            raise ValueError(f"config must be one of {sorted(CONFIGS)}; got {self.config!r}")
        if self.labelling not in ("full", "partial"):
            raise ValueError(f"labelling must be 'full' or 'partial'; got {self.labelling!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be an integer ≥ 1; got {self.batch_size!r}")


def distributed_info() -> tuple[int, int, bool]:
    """(rank, world size, initialised) of torch.distributed; (0, 1, False) outside torchrun."""
    return distributed.get_rank(), distributed.get_world_size(), distributed.is_initialized()


def epsilon_for(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """ε = E[Σy] per output class over the training label maps (Eq. 5 heuristic), via phidice.estimate_epsilon.

    For a sigmoid output (num_classes == 1) the foreground class is returned as a one-entry tensor.
    """
    C = 2 if num_classes == 1 else num_classes
    eps = phidice.estimate_epsilon(torch.as_tensor(labels), num_classes=C, progress=False)
    eps = torch.as_tensor(eps, dtype=torch.float64)
    return eps[1:] if num_classes == 1 else eps


def make_loss(config: str, num_classes: int, eps_vector: torch.Tensor | None = None):
    """A callable (logits, labels, annotated) -> loss for ``config``.

    Binary (num_classes == 1): sigmoid output, the single channel is the lesion. Multiclass: softmax, the
    background channel is left out of the Dice (as the paper), ε per class is given without background.
    """
    cls_name, phi, uses_eps, needs_annotated = CONFIGS[config]
    binary = num_classes == 1
    if uses_eps:
        if eps_vector is None:
            raise ValueError(f"config {config!r} needs ε from estimate_epsilon (eps_vector)")
        eps: float | list[float] = [float(v) for v in (eps_vector if binary else eps_vector[1:])]
    else:
        eps = PAPER_EPS
    _, _, in_ddp = distributed_info()
    # fused=False: on these small images the reference path is faster than the fused CPU kernel, whose
    # thread pool would also compete with torch's threads
    kwargs = dict(
        phi=phi, eps=eps, activation="sigmoid" if binary else "softmax", include_background=binary, fused=False
    )
    if in_ddp:
        kwargs["sync_batch"] = True  # Φ ∋ B then spans the global batch
    loss = getattr(phidice, cls_name)(**kwargs)
    if needs_annotated:
        fn = lambda logits, labels, annotated: loss(logits, labels, annotated)  # noqa: E731
    else:
        fn = lambda logits, labels, annotated: loss(logits, labels)  # noqa: E731
    fn.loss = loss  # type: ignore[attr-defined]  # the module, for a GradientMonitor
    return fn


def _batches(n: int, batch_size: int, iterations: int, seed: int, rank: int = 0, world: int = 1):
    """Index batches for ``iterations`` steps: a seeded permutation per epoch, dealt to the ranks in turn.

    Every rank draws the same permutations (same seed), and rank r takes every world-th batch-row of it, as
    a DistributedSampler would; the global batch is world × batch_size images.
    """
    g = np.random.default_rng(seed)
    per_step = batch_size * world
    buf = np.empty(0, dtype=np.int64)
    for _ in range(iterations):
        while len(buf) < per_step:
            buf = np.concatenate([buf, g.permutation(n)])
        step, buf = buf[:per_step], buf[per_step:]
        yield step[rank::world]


def train_model(
    model: torch.nn.Module,
    loss_fn,
    images: np.ndarray,
    labels: np.ndarray,
    annotated: np.ndarray,
    *,
    batch_size: int,
    iterations: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    desc: str = "train",
    monitor=None,
    steps_per_epoch: int = 0,
) -> list[float]:
    """Adam with a cosine-decayed learning rate for ``iterations`` steps of ``batch_size`` images.

    Under torchrun (``torch.distributed`` initialised) each rank takes its share of every global batch
    (see :func:`_batches`); wrap ``model`` in DistributedDataParallel before calling, and the losses were
    built with ``sync_batch=True`` by :func:`make_loss`. Returns the loss of every step (this rank's).

    ``monitor``: a :class:`phidice.GradientMonitor` of the loss, attached for the run; its ``epoch_end`` closes
    an epoch every ``steps_per_epoch`` steps (and the last, partial one), so its ``history`` has one record each.
    """
    rank, world, _ = distributed_info()
    torch.manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / max(iterations, 1))))
    x_all = torch.as_tensor(images)
    y_all = torch.as_tensor(labels)
    a_all = torch.as_tensor(annotated)
    losses = []
    bar = progress_bar(
        _batches(len(images), batch_size, iterations, seed, rank, world),
        total=iterations,
        desc=desc,
        leave=False,
        disable=not progress or rank != 0,
        mininterval=0.5,
    )
    if monitor is not None:
        monitor.attach()
    for idx in bar:
        idx = torch.as_tensor(idx)
        x, y, a = (t[idx].to(device) for t in (x_all, y_all, a_all))
        loss = loss_fn(model(x), y, a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if len(losses) % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-25:]):.3f}")
        if monitor is not None and steps_per_epoch and len(losses) % steps_per_epoch == 0:
            monitor.epoch_end()
    if monitor is not None:
        monitor.detach()
        if monitor.updates:
            monitor.epoch_end()
    return losses


@torch.no_grad()
def predict(
    model: torch.nn.Module, images: np.ndarray, num_classes: int, device: str = "cpu", batch_size: int = 32
) -> np.ndarray:
    """Hard label maps (N, H, W): sigmoid > 0.5 for one channel, argmax of the softmax otherwise."""
    model.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        logits = model(torch.as_tensor(images[i : i + batch_size]).to(device))
        pred = (logits[:, 0] > 0).long() if num_classes == 1 else logits.argmax(1)
        out.append(pred.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[2:], np.int64)
