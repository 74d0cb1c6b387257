"""GradientMonitorHandler on a real MONAI SupervisedTrainer (missing labels through AnnotatedLoss) and a real
SupervisedEvaluator: the values in engine.state.metrics are the monitor's, and what the labels fix is right."""

from __future__ import annotations

import pytest
import torch

import phidice

pytest.importorskip("monai")
pytest.importorskip("ignite")
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.transforms import Compose, EnsureTyped

from phidice.integrations.monai import AnnotatedLabelsd, AnnotatedLoss, GradientMonitorHandler, PrepareBatchAnnotated

C = 4


def cases(n=6, size=8):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        label = torch.randint(0, C, (1, size, size), generator=g).float()
        listed = [1, 2, 3]
        if i % 2:
            label[label == 2] = 0
            listed = [1, 3]
        out.append({"image": torch.randn(1, size, size, generator=g), "label": label, "annotated_labels": listed})
    return out


def loader():
    transforms = Compose([EnsureTyped(keys=["image", "label"]), AnnotatedLabelsd("annotated_labels", num_classes=C)])
    return DataLoader(Dataset(cases(), transforms), batch_size=2, shuffle=False)


def test_supervised_trainer_writes_state_metrics():
    network = torch.nn.Conv2d(1, C, 3, padding=1)
    leaf = phidice.LeafDiceLoss(phi="I", eps=1e-5, include_background=False)
    handler = GradientMonitorHandler(advice=False)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=loader(),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=AnnotatedLoss(leaf),
        prepare_batch=PrepareBatchAnnotated(),
        decollate=False,
        train_handlers=[handler],
    )
    seen = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(dict(e.state.metrics)))
    trainer.run()
    assert handler.monitor.loss is leaf and [h["updates"] for h in handler.monitor.history] == [3, 3]
    for metrics, h in zip(seen, handler.monitor.history):
        assert metrics["phidice_unannotated_fraction"] == pytest.approx(3 / (6 * 3))  # class 2 in 3 of 6 cases
        assert metrics["phidice_unannotated_fraction/class2"] == pytest.approx(0.5)
        assert metrics["phidice_empty_gradient_share"] == pytest.approx(h["empty_gradient_share"])
        assert metrics["phidice_empty_predicted_volume/class1"] == pytest.approx(
            h["per_class"][1]["empty_predicted_volume"], nan_ok=True
        )
    assert seen[0]["phidice_nonempty_dice"] != seen[1]["phidice_nonempty_dice"]  # trained between the epochs


def test_supervised_evaluator_updates_from_its_predictions():
    network = torch.nn.Conv2d(1, C, 3, padding=1)
    loss = phidice.DiceLoss(phi="BI", eps=1e-5, include_background=False)
    handler = GradientMonitorHandler(loss, advice=False)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader(), network=network, val_handlers=[handler]
    )
    evaluator.run()
    reference = phidice.GradientMonitor(loss, log=False)
    with torch.no_grad():
        for batch in loader():
            reference.update(network(batch["image"]), batch["label"])
    want = reference.compute()
    for key in ("empty_subset_fraction", "empty_gradient_share", "nonempty_dice"):
        assert evaluator.state.metrics[f"phidice_{key}"] == pytest.approx(want[key], rel=1e-6)


def test_no_phidice_loss_is_named():
    network = torch.nn.Conv2d(1, C, 3, padding=1)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader(),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.MSELoss(),
        train_handlers=[GradientMonitorHandler()],
    )
    with pytest.raises(TypeError, match="phidice Dice-family loss"):
        trainer.run()


def test_the_block_of_docs_monitor_md():
    """docs/monitor.md's MONAI block: its import runs, and its handler list works in a real trainer."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "monitor.md").read_text()
    block = text.split("<!-- run by tests/integrations/monai/test_monai_monitor.py -->\n```python\n")[1]
    block = block.split("```")[0]
    from monai.handlers import StatsHandler

    network = torch.nn.Conv2d(1, C, 3, padding=1)
    arguments = dict(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader(),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=phidice.DiceLoss(include_background=False),
    )
    namespace = {
        "SupervisedTrainer": lambda *_, train_handlers: SupervisedTrainer(**arguments, train_handlers=train_handlers),
        "StatsHandler": lambda *_: StatsHandler(iteration_log=False),
    }
    exec(block.replace("(...)", "()").replace("..., ", ""), namespace)
    namespace["trainer"].run()
    assert "phidice_empty_gradient_share" in namespace["trainer"].state.metrics
