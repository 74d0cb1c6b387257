"""MONAI SupervisedTrainer with the leaf Dice on a partially annotated data list.

Eight generated 2D cases: background and three classes of discs. Even cases annotate every class; in odd
cases class 2 was not annotated, so its discs are labelled background and the data list says which
classes each case annotates. AnnotatedLabelsd turns that list into the case's (C,) annotated row,
PrepareBatchAnnotated hands the batch's rows to the loss with the label, and AnnotatedLoss calls
LeafDiceLoss(pred, label, annotated): class 2 of an odd case leaves the loss instead of being taught "empty".

    python examples/monai_leaf_trainer.py --epochs 10 --out runs/leaf_losses.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, create_test_image_2d
from monai.engines import SupervisedTrainer
from monai.handlers import from_engine
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped

import phidice
from phidice.integrations.monai import AnnotatedLabelsd, AnnotatedLoss, PrepareBatchAnnotated

NUM_CLASSES = 4  # background + 3


def data_list(n: int = 8, size: int = 32) -> list[dict]:
    cases = []
    for i in range(n):
        image, label = create_test_image_2d(
            size,
            size,
            num_objs=4,
            rad_max=7,
            rad_min=3,
            num_seg_classes=NUM_CLASSES - 1,
            channel_dim=0,
            random_state=np.random.RandomState(i),
        )
        label = label.astype(np.float32)  # MONAI keeps labels as float (B, 1, *S)
        if i % 2:
            label[label == 2] = 0  # class 2 not annotated: its voxels read as background
            cases.append({"image": image, "label": label, "annotated_labels": [1, 3]})
        else:
            cases.append({"image": image, "label": label, "annotated_labels": [1, 2, 3]})
    return cases


def build_trainer(epochs: int, seed: int = 0) -> SupervisedTrainer:
    torch.manual_seed(seed)
    transforms = Compose(
        [
            EnsureTyped(keys=["image", "label"]),
            AnnotatedLabelsd("annotated_labels", num_classes=NUM_CLASSES, label_key="label"),  # -> d["annotated"]
        ]
    )
    loader = DataLoader(Dataset(data_list(), transforms), batch_size=4, shuffle=False)
    network = UNet(spatial_dims=2, in_channels=1, out_channels=NUM_CLASSES, channels=(8, 16), strides=(2,))
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-2),
        loss_function=AnnotatedLoss(phidice.LeafDiceLoss(phi="BI", eps=1e-5, include_background=False)),
        prepare_batch=PrepareBatchAnnotated(),  # label.meta["annotated"] = the batch's (B, C) rows
    )


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", help="write the per-iteration losses to this JSON file")
    args = parser.parse_args(argv)
    trainer = build_trainer(args.epochs)
    losses: list[float] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        losses.append(from_engine("loss", first=True)(engine.state.output))
        print(f"iteration {engine.state.iteration}: leaf Dice loss {losses[-1]:.4f}")

    trainer.run()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"losses": losses}))
    return losses


if __name__ == "__main__":
    main()
