"""Cases of test_nnunet_ddp.py: a small conv net, a fixed batch of 4 with deep-supervision targets, and the
losses (phidice's through the integration, nnU-Net's stock), built for DDP or for one process."""

from __future__ import annotations

import _nnunet_helpers as H
import torch
import torch.nn.functional as F
from torch import nn

from phidice.integrations.nnunet.loss import PhiDiceNNUNetLoss
from phidice.integrations.nnunet.options import resolve_options
from phidice.integrations.nnunet.task import NNUNetTask

LEVELS = 2
WEIGHTS = tuple(H.ds_weights(LEVELS + 1, is_ddp=True))[:LEVELS]  # two levels used, both with weight > 0


class Net(nn.Module):
    """Logits at full and half resolution (deep supervision)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        return [out, F.avg_pool2d(out, 2)]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return Net(3).double()


def _task(name: str) -> NNUNetTask:
    return NNUNetTask.from_label_dict(H.LABELS_IGNORE if "ignore" in name else H.LABELS, batch_dice=True)


def make_data(name: str):
    task = _task(name)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((4, 1, 16, 16), generator=g, dtype=torch.float64)
    lab = H.make_labels(4, (16, 16), ignore=task.ignore_label, seed=2)
    return x, H.downsample(lab, LEVELS)


def ours(name: str, phi: str):
    def build(ddp: bool):
        task = _task(name)
        opts = resolve_options({"phi": phi}, task, is_ddp=ddp)  # sync_batch follows DDP, as in the trainers
        return PhiDiceNNUNetLoss(opts, task, weights=WEIGHTS)

    return build


def stock(name: str):
    def build(ddp: bool):
        from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
        from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

        task = _task(name)
        loss = DC_and_CE_loss(
            {"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": ddp},
            {},
            weight_ce=1,
            weight_dice=1,
            ignore_label=task.ignore_label,
            dice_class=MemoryEfficientSoftDiceLoss,
        )
        return DeepSupervisionWrapper(loss, WEIGHTS)

    return build


EVEN, UNEVEN = ((0, 2), (2, 4)), ((0, 3), (3, 4))
CASES = {
    "phidice-BI-even": (EVEN, ours("phidice-BI-even", "BI")),
    "nnunet-BI-even": (EVEN, stock("nnunet-BI-even")),
    "phidice-BI-uneven-ignore": (UNEVEN, ours("phidice-BI-uneven-ignore", "BI")),
    "phidice-I-uneven-ignore": (UNEVEN, ours("phidice-I-uneven-ignore", "I")),
}


def run(model, loss_fn, x, targets):
    model.zero_grad(set_to_none=True)
    value = loss_fn(model(x), targets)
    value.backward()
    return value.detach(), [p.grad.detach().clone() for p in model.parameters()]
