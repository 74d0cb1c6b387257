"""One training step of reproduce's U-Net (48², B = 1, Φ = BI, base 12 channels as the grid): alone, with the
GradientMonitor, and through the monitored code path with a no-op hook (which isolates the hook's own cost).

    .venv/bin/python benchmarks/bench_monitor_step.py
"""

import statistics
import time

import torch

import phidice
from phidice.experiments.unet import UNet2D

torch.set_num_threads(2)
torch.manual_seed(0)
model = UNet2D(1, 1, 12, 3)
opt = torch.optim.Adam(model.parameters(), 1e-3)
x = torch.randn(1, 1, 48, 48)
y = (torch.rand(1, 48, 48) < 0.1).long()
y[0] = 0
loss = phidice.DiceLoss(phi="BI", eps=1e-7, activation="sigmoid", fused=False)
mon = phidice.GradientMonitor(loss, log=False)


class Noop:
    loss = loss

    def record(self, *a, **k):
        pass


noop = Noop()


def step(m):
    opt.zero_grad(set_to_none=True)
    loss(model(x), y, monitor=m).backward()
    opt.step()


for m in (None, mon, noop) * 3:
    step(m)
t = {0: [], 1: [], 2: []}
ms = [None, mon, noop]
for r in range(10):
    for k in ((0, 1, 2), (2, 1, 0), (1, 0, 2))[r % 3]:
        t0 = time.perf_counter()
        [step(ms[k]) for _ in range(4)]
        t[k].append((time.perf_counter() - t0) / 4)
print("alone, monitor, path-without-hook (ms):", [round(1e3 * statistics.median(t[k]), 1) for k in (0, 1, 2)])
