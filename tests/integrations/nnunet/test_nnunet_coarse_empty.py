"""The nnU-Net loss with ``coarse_empty``: "nnunet" (the default) is nnU-Net's own targets; "missing" and
"maxpool" equal phidice.DeepSupervisionLoss on the same outputs and nnU-Net's list targets."""

from __future__ import annotations

import pytest

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H
import torch
import torch.nn.functional as F

import phidice
from phidice.integrations.nnunet.loss import PhiDiceNNUNetLoss, ce_scale
from phidice.integrations.nnunet.options import resolve_options
from phidice.integrations.nnunet.task import NNUNetTask


@pytest.mark.parametrize("labels", ["labels", "labels+ignore", "regions+ignore"])
@pytest.mark.parametrize("policy", ["missing", "maxpool"])
def test_coarse_empty_equals_the_deep_supervision_wrapper(labels, policy):
    task = NNUNetTask.from_label_dict(H.LABEL_DICTS[labels], batch_dice=True)
    weights = tuple(H.ds_weights(3))
    ours = PhiDiceNNUNetLoss(resolve_options({"coarse_empty": policy}, task), task, weights=weights)
    assert ours.options.configured()["coarse_empty"] == policy
    lab = H.make_labels(3, (16, 16), ignore=task.ignore_label, seed=5, num_labels=len(task.labels))
    lab[0][lab[0] == 2] = 0
    lab[0, 0, 0, 0] = 2  # one voxel of label 2 that nnU-Net's nearest-exact pyramid (odd indices) drops
    full = H.to_regions(lab, task) if task.regions else lab
    targets = [full] + [F.interpolate(full.float(), size=(s, s), mode="nearest-exact").to(full.dtype) for s in (8, 4)]
    g = torch.Generator().manual_seed(6)
    outputs = [
        (2 * torch.randn((3, task.num_channels, *t.shape[2:]), generator=g)).requires_grad_(True) for t in targets
    ]
    base = phidice.DiceCELoss(
        phi="BI",
        eps=1e-5,
        activation=task.activation,
        lambda_ce=ce_scale(task),
        include_background=task.regions,
        ignore_index=None if task.regions else task.ignore_label,
    )
    wrapper = phidice.DeepSupervisionLoss(base, weights=weights, coarse_empty=policy)
    if task.regions:  # the wrapper takes the region map and its ignore mask at full resolution
        full, mask = targets[0][:, :-1], targets[0][:, -1:] == 0
        expected = wrapper(outputs, full, mask=mask)
    else:
        expected = wrapper(outputs, targets)
    got = ours(outputs, targets)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    nnunet = PhiDiceNNUNetLoss(resolve_options(None, task), task, weights=weights)(outputs, targets)
    assert abs(float(got) - float(nnunet)) > 1e-6  # the policies change the coarse levels of this case


def test_coarse_empty_is_checked():
    task = NNUNetTask.from_label_dict(H.LABELS, batch_dice=True)
    with pytest.raises(ValueError, match="'coarse_empty' must be one of missing, maxpool, nnunet"):
        resolve_options({"coarse_empty": "drop"}, task)
    assert "coarse_empty" not in resolve_options(None, task).configured()
