"""A small 2D U-Net: enough capacity for the 48×48 slices of the experiments, fast on a laptop CPU.

GroupNorm rather than BatchNorm so that the normalisation does not change with the batch size B:
the experiments vary B to study Φ = BI, and nothing else should depend on it.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = max(1, cout // 4)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


class UNet2D(nn.Module):
    """U-Net with ``levels`` resolutions (``levels - 1`` poolings), ``base`` channels doubling per level.

    Input (B, in_channels, H, W) with H and W divisible by 2**(levels-1); output logits (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base: int = 12, levels: int = 3):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be ≥ 1; got {levels}")
        widths = [base * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList(nn.ConvTranspose2d(w2, w1, 2, stride=2) for w1, w2 in zip(widths[:-1], widths[1:]))
        self.merge = nn.ModuleList(_block(2 * w1, w1) for w1 in widths[:-1])
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 ** (self.levels - 1)
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"image size must be divisible by {f}; got {tuple(x.shape[-2:])}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(reversed(self.up), reversed(self.merge)):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)
