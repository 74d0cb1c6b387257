"""Global-batch Dice under ``torch.distributed`` (DDP): ``sync_batch=True``.

Under DDP the batch is the union of every rank's local batch. With Φ ∋ B (BI, BCI) one subset φ spans
that batch, so a Dice ratio computed per rank is a different loss (nnU-Net #82; its all-gather fix lost
a ``.sum(0)``, #1354). With ``sync_batch=True`` the core hands its per-(b, c) sums to
:func:`gather_batch` before any subset sum, weight or ratio: every rank then holds the (B, C) sums of
the concatenated batch (rows in rank order) and computes, for every Φ, the loss of one process on
that batch — the same value on every rank, good for logging.

Gradients. Rank r's sums s_r enter the gathered S on every rank. The backward of the gather
all-reduces (SUM) the incoming ∂L/∂S and keeps rank r's rows: with every rank computing the same L,
that is R·∂L/∂s_r. DDP divides parameter gradients by R, so they equal ∂L/∂θ of one process on the
concatenated batch. (In general the SUM backward is the adjoint of the gather for the objective
Σ_r L_r, and DDP's average makes it (1/R)·Σ_r L_r.) :func:`all_reduce_sum` follows the same rule.

Without an initialised process group (or with one rank) everything here is a no-op; a loss asked to
sync warns once per process. Every rank must call the loss the same number of times (the gather and
its backward are collectives), and every rank needs at least one image.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist

from phidice.core.types import DiceStats

__all__ = [
    "init_from_env",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "all_reduce_sum",
    "global_mean",
    "all_reduce_stats",
    "gather_batch",
    "gather_rows",
]

_warned = False


def is_initialized() -> bool:
    """Whether ``torch.distributed`` is available and a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1 in the environment).

    nccl for a CUDA ``device`` (each rank on GPU ``LOCAL_RANK``), gloo otherwise. Returns True when it
    initialised a group (the caller then calls ``torch.distributed.destroy_process_group()`` at the end);
    False outside torchrun or when a group exists already.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_initialized():
        return False
    if not dist.is_available():
        raise RuntimeError("launched by torchrun (WORLD_SIZE > 1) but this torch build has no torch.distributed")
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def _active(warn: bool) -> bool:
    """True when there is more than one rank to synchronise with; warns once if asked and there is none."""
    global _warned
    if is_initialized():
        return dist.get_world_size() > 1
    if warn and not _warned:
        warnings.warn(
            "sync_batch=True but torch.distributed has no initialised process group: the Dice loss uses this "
            "process's batch only (call torch.distributed.init_process_group, e.g. under torchrun)",
            RuntimeWarning,
            stacklevel=4,
        )
        _warned = True
    return False


class _AllReduceSum(torch.autograd.Function):
    """Σ_r x_r on every rank; backward Σ_r ∂L_r/∂out (see the module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Every rank's rows of ``x`` (dim 0; counts may differ, 0 included), concatenated in rank order.

    No gradient. Trailing dims are zero-padded to the largest across ranks (every rank must pass the same
    number of dims). Returns the rows, on ``x``'s device, and each rank's shape. Needs a process group.
    """
    device = x.device
    if dist.get_backend() == "nccl" and not x.is_cuda:  # nccl moves CUDA tensors only
        device = torch.device("cuda", torch.cuda.current_device())
    shape = torch.tensor(x.shape, dtype=torch.int64, device=device)
    shapes = [torch.empty_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    sizes = [tuple(int(v) for v in s.tolist()) for s in shapes]
    padded = torch.zeros(tuple(max(dims) for dims in zip(*sizes)), dtype=x.dtype, device=device)
    padded[tuple(slice(0, n) for n in x.shape)] = x.detach().to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: s[0]] for p, s in zip(parts, sizes)]).to(x.device), sizes


class _GatherRows(torch.autograd.Function):
    """Every rank's (B_r, C, k) rows, concatenated in rank order; backward Σ_r then own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rows, shapes = gather_rows(x)
        sizes, classes = [s[0] for s in shapes], {s[1] for s in shapes}
        if len(classes) > 1 or min(sizes) == 0:
            raise ValueError(
                f"sync_batch needs the same number of classes and at least one image on every rank; "
                f"got (B, C) per rank = {[s[:2] for s in shapes]}"
            )
        rank = dist.get_rank()
        ctx.rows = (sum(sizes[:rank]), sum(sizes[: rank + 1]))
        return rows

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        start, stop = ctx.rows
        return g[start:stop], None


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``t`` (same shape on every rank), differentiable; ``t`` itself without a group.

    For metrics accumulators (sums of counts or of per-(b, c) statistics) and for global means:
    ``all_reduce_sum(local_sum) / all_reduce_sum(local_count)`` is the global mean on every rank, with
    DDP-correct gradients.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"all_reduce_sum expects a torch.Tensor; got {type(t).__name__}")
    if not _active(warn=False):
        return t
    return _AllReduceSum.apply(t)


def global_mean(total: torch.Tensor, count: torch.Tensor, sync: bool = True) -> torch.Tensor:
    """``total / count`` with both summed over ranks when ``sync`` (one collective; plain without a group).

    The global voxel mean of a per-voxel loss, e.g. the cross-entropy of a Dice + CE loss under
    ``sync_batch``: every rank gets the value of one process on the concatenated batch, and DDP's
    averaged gradients match it. ``count`` (no gradient needed) of 0 gives 0, not NaN.
    """
    if sync and _active(warn=False):
        both = all_reduce_sum(torch.stack((total, count.to(total.dtype))))
        total, count = both[0], both[1]
    return total / torch.where(count > 0, count, torch.ones_like(count))


def all_reduce_stats(stats: DiceStats) -> DiceStats:
    """Σ over ranks of per-φ sums (e.g. the (1, C) sums of Φ = BI), differentiable, in one collective.

    Use it on sums that already span the local batch; the core's ``sync_batch`` uses
    :func:`gather_batch` instead, which also serves Φ = I/CI and the leaf Dice's ``keep``.
    """
    if not _active(warn=True):
        return stats
    packed = _AllReduceSum.apply(torch.stack(tuple(stats), dim=-1))
    return DiceStats(*packed.unbind(-1))


def gather_batch(stats: DiceStats, keep: torch.Tensor | None = None) -> tuple[DiceStats, torch.Tensor | None]:
    """The (B, C) sums (and ``keep``) of the global batch: every rank's rows, in rank order.

    Local batch sizes may differ between ranks. The result is the same on every rank; the backward
    follows the module docstring, so DDP's averaged gradients are those of one process on the
    concatenated batch. ``keep`` (B, C) bool is gathered alongside, without gradient.
    """
    I = stats.intersection
    if I.ndim != 2 or any(t.shape != I.shape for t in stats):
        raise ValueError(f"gather_batch expects (B, C) sums of equal shapes; got {[tuple(t.shape) for t in stats]}")
    if keep is not None and keep.shape != I.shape:
        raise ValueError(f"keep must have shape (B, C) = {tuple(I.shape)}; got {tuple(keep.shape)}")
    if not _active(warn=True):
        return stats, keep
    columns = list(stats) + ([] if keep is None else [keep.to(I.dtype)])
    parts = _GatherRows.apply(torch.stack(columns, dim=-1)).unbind(-1)  # (B_global, C) each
    return DiceStats(*parts[:3]), (None if keep is None else parts[3] > 0.5)
