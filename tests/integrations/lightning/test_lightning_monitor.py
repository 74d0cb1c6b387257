"""GradientMonitorCallback in a real Lightning Trainer: the values logged per epoch through the Trainer's CSV
logger are the monitor's, the data-determined share of empty subsets is the labels' own, and the history rides
in the checkpoint."""

from __future__ import annotations

import csv

import pytest
import torch

import phidice

pytest.importorskip("lightning")
import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger

from phidice.integrations.lightning import GradientMonitorCallback


def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 1, 8, 8, generator=g)
    labels = torch.randint(0, 3, (8, 8, 8), generator=g)
    labels[:3][labels[:3] == 2] = 0  # class 2 absent from 3 of 8 images
    return images, labels


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.loss = phidice.DiceLoss(phi="I", eps=1e-5, include_background=False)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", self.loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_logs_the_monitor_each_epoch(tmp_path):
    images, labels = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=4)
    callback = GradientMonitorCallback(advice=False)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(Tiny(), loader, loader)
    rows = [
        r
        for r in csv.DictReader(open(tmp_path / "run" / "version_0" / "metrics.csv"))
        if r.get("phidice/empty_subset_fraction")
    ]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    history = callback.monitor.history
    assert [h["updates"] for h in history] == [2, 2]  # training batches only, not validation
    empty = (torch.nn.functional.one_hot(labels, 3)[..., 1:].flatten(1, 2).sum(1) == 0).float()
    for row, h in zip(rows, history):
        assert float(row["phidice/empty_subset_fraction"]) == pytest.approx(float(empty.mean()))
        assert float(row["phidice/empty_subset_fraction/class2"]) == pytest.approx(3 / 8)
        assert float(row["phidice/empty_gradient_share"]) == pytest.approx(h["empty_gradient_share"], rel=1e-6)
        assert float(row["phidice/empty_predicted_volume/class2"]) == pytest.approx(
            h["per_class"][2]["empty_predicted_volume"], rel=1e-6
        )
    assert history[0]["empty_predicted_volume"] != history[1]["empty_predicted_volume"]  # the model moved
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=False)
    saved = next(v for k, v in ckpt["callbacks"].items() if "GradientMonitorCallback" in k)
    assert len(saved["history"]) == 2


def test_a_module_without_a_phidice_loss_is_named():
    module = Tiny()
    module.loss = torch.nn.CrossEntropyLoss()
    with pytest.raises(TypeError, match="phidice Dice-family loss"):
        GradientMonitorCallback().setup(None, module)


def test_the_block_of_docs_monitor_md():
    """docs/monitor.md's Lightning block: its import and its callback call run as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "monitor.md").read_text()
    block = text.split("<!-- run by tests/integrations/lightning/test_lightning_monitor.py -->\n```python\n")[1]
    block = block.split("```")[0]
    namespace = {"lightning": __import__("lightning")}
    exec(block.replace("callbacks=[", "enable_progress_bar=False, logger=False, callbacks=["), namespace)
    assert isinstance(namespace["trainer"].callbacks[0], GradientMonitorCallback)
