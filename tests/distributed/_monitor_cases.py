"""The GradientMonitor cases shared by the 2-rank run and its single-process reference."""

import torch

import phidice
from phidice.diagnostics.monitor import GradientMonitor

# sync_batch: uneven local batches (every rank holds the global batch's subsets). Without it each rank's loss is
# the mean over its own subsets, so only equal local batches give one process's weights (up to a common factor)
SPLITS = {False: [(0, 2), (2, 4)], True: [(0, 3), (3, 4)]}
CASES = ("I", "CI-two-steps", "BI-sync", "BCI-sync", "leaf-BI-sync")


def rows_of(name: str, rank: int) -> slice:
    return slice(*SPLITS[name.endswith("sync")][rank])


def data():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 6, 5, dtype=torch.float64, generator=g) * 2
    labels = torch.randint(0, 3, (4, 6, 5), generator=g)
    labels[labels == 2] = 0  # class 2 absent from the batch: an empty φ under Φ = BI
    annotated = torch.ones(4, 3, dtype=torch.bool)
    annotated[0, 2] = annotated[3, 1] = False
    labels[3] = 0  # no foreground: an empty φ under Φ = CI too
    return logits, labels, annotated


def run(name: str, rows: slice) -> dict:
    """compute() after feeding the monitor the ``rows`` of the batch (all of them in one process)."""
    logits, labels, annotated = (t[rows] for t in data())
    phi = name.split("-")[-2] if name.startswith("leaf") else name.split("-")[0]
    sync = name.endswith("sync")
    if name.startswith("leaf"):
        loss = phidice.LeafDiceLoss(phi=phi, eps=1e-5, sync_batch=sync)
        args = (annotated,)
    else:
        loss = phidice.DiceLoss(phi=phi, eps=2.0, sync_batch=sync, include_background=False)
        args = ()
    monitor = GradientMonitor(loss, log=False)
    steps = 2 if "two-steps" in name else 1
    for step in range(steps):
        x = (logits + step).requires_grad_()
        loss(x, labels, *args, monitor=monitor).backward()
    result = monitor.compute()
    result.pop("updates")
    return result
