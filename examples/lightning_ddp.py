"""Lightning under the DDP strategy with the batch Dice (Φ = BI) of the global batch: sync_batch=True.

Each of the 2 CPU processes (gloo) sees half of every batch; with sync_batch=True the loss gathers the
per-(image, class) sums of both before the Dice ratio, so every rank computes the loss of one process on
the whole batch, and DDP's averaged gradients are that loss's gradients. Every fourth image is empty; under
Φ = BI it shares one ratio per class with the rest of the batch, so which images make up "the batch" decides
the loss: with sync_batch=True, those of every rank.

    python examples/lightning_ddp.py --devices 2 --batch-size 2 --out runs/lightning_ddp

Lightning's DDP sampler shuffles with seed 0: step t of epoch e trains on images
perm[4t : 4t + 4] of perm = DistributedSampler(..., num_replicas=1, seed=0) at epoch e, split between the
ranks. tests/examples/test_examples.py replays those global batches in one process and finds the same
losses and weights.
"""

from __future__ import annotations

import argparse
import json
import os

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import phidice


def make_data(n: int = 16, size: int = 16, seed: int = 0) -> TensorDataset:
    """Discs of random centre and radius on noise; every fourth image is empty. Float64 images, int64 labels."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        if i % 4 != 3:
            cy, cx = torch.randint(4, size - 4, (2,), generator=g).tolist()
            r = int(torch.randint(2, 5, (1,), generator=g))
            labels[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).long()
    images = labels.unsqueeze(1).double() + 0.5 * torch.randn(n, 1, size, size, generator=g, dtype=torch.float64)
    return TensorDataset(images, labels)


class Segmenter(L.LightningModule):
    def __init__(self, lr: float = 0.5):
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3, padding=1)
        )
        # Φ = BI over the global batch: the same value on every rank, DDP-exact gradients
        self.loss = phidice.DiceLoss(phi="BI", eps=1e-5, include_background=False, sync_batch=True)
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        image, label = batch
        loss = self.loss(self.net(image), label)
        self.losses.append(loss.item())
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def main(argv=None) -> Segmenter:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices", type=int, default=2, help="CPU processes (the DDP strategy; Lightning uses gloo on CPU)"
    )
    parser.add_argument("--batch-size", type=int, default=2, help="images per process and step")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", help="folder for rank<r>.json: the per-step losses and the final weights")
    args = parser.parse_args(argv)

    L.seed_everything(0, verbose=False)
    model = Segmenter().double()
    loader = DataLoader(make_data(), batch_size=args.batch_size, shuffle=True)  # DDP: Lightning's DistributedSampler
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    print(f"rank {trainer.global_rank}: Φ = BI loss per step", " ".join(f"{v:.4f}" for v in model.losses))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        weights = {k: v.tolist() for k, v in model.net.state_dict().items()}
        with open(os.path.join(args.out, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"world_size": trainer.world_size, "losses": model.losses, "weights": weights}, f)
    return model


if __name__ == "__main__":
    main()
