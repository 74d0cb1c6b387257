"""Partial labels through MONAI: AnnotatedLabelsd → DataLoader → PrepareBatchAnnotated → AnnotatedLoss.

The SupervisedTrainer tests run the trainer's own loss path and read the gradient of its prediction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import phidice

pytest.importorskip("monai")
pytest.importorskip("ignite")  # monai.engines runs on ignite
from ignite.engine import Events
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.transforms import Compose, EnsureTyped

from phidice.integrations.monai import AnnotatedLabelsd, AnnotatedLoss, PrepareBatchAnnotated

C = 4


# ---------------------------------------------------------------- the transform


def test_rows_from_lists_names_and_default():
    t = AnnotatedLabelsd("annotated_labels", num_classes=C)
    out = t({"image": 1, "annotated_labels": [3, 1]})
    assert out["annotated"].tolist() == [True, True, False, True]  # the background is always annotated
    assert "annotated_labels" not in out and out["image"] == 1
    assert t({"annotated_labels": np.array([2])})["annotated"].tolist() == [True, False, True, False]
    assert t({"annotated_labels": []})["annotated"].tolist() == [True, False, False, False]  # background only

    named = AnnotatedLabelsd(
        "organs",
        num_classes=C,
        names={"background": 0, "liver": 1, "kidney": 2, "spleen": 3},
        annotated_key="rows",
        default="all",
    )
    assert named({"organs": ["spleen", "liver"]})["rows"].tolist() == [True, True, False, True]
    assert named({})["rows"].tolist() == [True] * C
    assert AnnotatedLabelsd("a", num_classes=C, default=[2])({})["annotated"].tolist() == [True, False, True, False]

    sigmoid = AnnotatedLabelsd("a", num_classes=3, background=False)  # independent channels: taken as listed
    assert sigmoid({"a": [1, 2]})["annotated"].tolist() == [False, True, True]


@pytest.mark.parametrize(
    "case,error,match",
    [
        ({"image": 0}, KeyError, r"d\['annotated_labels'\] is missing.*'image'"),
        ({"annotated_labels": [1, 4]}, ValueError, r"\[1\]: label 4 is outside \[0, 3\]"),
        ({"annotated_labels": [-1]}, ValueError, r"label -1 is outside"),
        ({"annotated_labels": [1.0]}, TypeError, r"must be an integer"),
        ({"annotated_labels": [True]}, TypeError, r"must be an integer"),
        ({"annotated_labels": "liver"}, TypeError, r"must be a list of annotated labels"),
        ({"annotated_labels": 2}, TypeError, r"must be a list of annotated labels"),
        ({"annotated_labels": ["liver"]}, TypeError, r"is a name, but .* no names"),
    ],
)
def test_bad_annotations_are_named(case, error, match):
    with pytest.raises(error, match=match):
        AnnotatedLabelsd("annotated_labels", num_classes=C)(case)


def test_bad_options_and_names():
    with pytest.raises(ValueError, match="unknown label name 'lung'"):
        AnnotatedLabelsd("a", num_classes=C, names={"liver": 1})({"a": ["lung"]})
    with pytest.raises(ValueError, match=r"names\['x'\]: label 7 is outside"):
        AnnotatedLabelsd("a", num_classes=C, names={"x": 7})
    with pytest.raises(TypeError, match=r"names\['x'\]: label 'y' is a name"):
        AnnotatedLabelsd("a", num_classes=C, names={"x": "y"})
    with pytest.raises(ValueError, match="reads one key"):
        AnnotatedLabelsd(["a", "b"], num_classes=C)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        AnnotatedLabelsd("a", num_classes=0)
    with pytest.raises(ValueError, match="lists no label"):
        AnnotatedLabelsd("a", num_classes=C, background=False)({"a": []})
    with pytest.raises(ValueError, match=r"default\[0\]: label 9"):
        AnnotatedLabelsd("a", num_classes=C, default=[9])


def test_label_map_check_names_the_case_and_the_unlisted_labels():
    t = AnnotatedLabelsd("a", num_classes=C, label_key="label")
    label = torch.tensor([[[0.0, 1.0], [3.0, 255.0]]])  # 255: an ignore value, not a class
    assert t({"a": [1, 3], "label": label})["annotated"].tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match=r"has voxels of label\(s\) \[3\]"):
        t({"a": [1, 2], "label": label})
    meta_label = MetaTensor(label, meta={"filename_or_obj": "/data/case7_seg.nii.gz"})
    with pytest.raises(ValueError, match=r"\(case '/data/case7_seg.nii.gz'\): d\['a'\]: the label map"):
        t({"a": [1, 2], "label": meta_label})
    with pytest.raises(ValueError, match=r"\(case 'img3.nii.gz'\): d\['a'\]\[0\]: label 9 is outside"):
        t({"image": "img3.nii.gz", "a": [9]})
    with pytest.raises(KeyError, match="label_key 'label' is not in the case"):
        t({"a": [1]})


def _cases(n=4, size=8, channels=False):
    """Label maps (1, S, S) with classes 0..3, class 2 unannotated in odd cases; with ``channels``, multi-channel
    maps (3, S, S) of classes 1..3 (sigmoid), whose lists name channels."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for i in range(n):
        label = torch.randint(0, C, (1, size, size), generator=g).float()
        listed = [1, 2, 3]
        if i % 2:
            label[label == 2] = 0
            listed = [1, 3]
        if channels:
            label = torch.cat([(label == k).float() for k in range(1, C)])
            listed = [k - 1 for k in listed]
        cases.append({"image": torch.randn(1, size, size, generator=g), "label": label, "annotated_labels": listed})
    return cases


def _loader(cases, batch_size=2, num_classes=C, **transform_options):
    transforms = Compose(
        [
            EnsureTyped(keys=["image", "label"]),
            AnnotatedLabelsd("annotated_labels", num_classes=num_classes, **transform_options),
        ]
    )
    return DataLoader(Dataset(cases, transforms), batch_size=batch_size, shuffle=False)


def test_rows_collate_and_ride_on_the_label():
    batch = next(iter(_loader(_cases())))
    assert batch["annotated"].dtype == torch.bool and tuple(batch["annotated"].shape) == (2, C)
    image, label = PrepareBatchAnnotated()(batch, torch.device("cpu"))
    assert isinstance(label, MetaTensor) and torch.equal(label.as_tensor(), batch["label"].as_tensor())
    assert label.meta["annotated"].tolist() == [[True, True, True, True], [True, True, False, True]]
    # a plain label tensor becomes a MetaTensor view
    plain = {**batch, "label": batch["label"].as_tensor()}
    _, label2 = PrepareBatchAnnotated()(plain)
    assert isinstance(label2, MetaTensor) and torch.equal(label2.meta["annotated"], batch["annotated"])
    # rows that a later transform turned into MetaTensors ride as plain tensors
    typed = {**batch, "annotated": MetaTensor(batch["annotated"])}
    _, label3 = PrepareBatchAnnotated()(typed)
    assert type(label3.meta["annotated"]) is torch.Tensor


def test_prepare_batch_errors():
    batch = next(iter(_loader(_cases())))
    with pytest.raises(KeyError, match=r"annotated_key='rows' is not in the batch \(the AnnotatedLabelsd"):
        PrepareBatchAnnotated(annotated_key="rows")(batch)
    with pytest.raises(KeyError, match="image_key='img'"):
        PrepareBatchAnnotated(image_key="img")(batch)
    with pytest.raises(ValueError, match=r"must be \(B, C\) rows with B = 2; got shape \(3, 4\)"):
        PrepareBatchAnnotated()({**batch, "annotated": torch.ones(3, C, dtype=torch.bool)})
    with pytest.raises(TypeError, match="dictionary batches"):
        PrepareBatchAnnotated()((batch["image"], batch["label"]))


def test_annotated_loss_reads_the_rows_and_explains_their_absence():
    batch = next(iter(_loader(_cases())))
    _, label = PrepareBatchAnnotated()(batch)
    logits = torch.randn(2, C, 8, 8)
    leaf = phidice.LeafDiceLoss(phi="BI", include_background=False)
    wrapped = AnnotatedLoss(leaf)
    torch.testing.assert_close(
        wrapped(logits, label), leaf(logits, label.as_tensor(), batch["annotated"]), rtol=0, atol=0
    )
    with pytest.raises(ValueError, match=r"target.meta\['annotated'\].*a Tensor.*PrepareBatchAnnotated"):
        wrapped(logits, label.as_tensor())
    with pytest.raises(ValueError, match="a MetaTensor without it"):
        wrapped(logits, MetaTensor(label.as_tensor()))
    with pytest.raises(TypeError, match="must be a missing-label loss"):
        AnnotatedLoss("leaf")


# ---------------------------------------------------------------- SupervisedTrainer: zero gradient


def _trainer_gradients(network, loss_function, cases, epochs=1, **transform_options):
    """Run SupervisedTrainer; per iteration, the gradient of its prediction and the batch's annotated rows."""
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=_loader(cases, **transform_options),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=loss_function,
        prepare_batch=PrepareBatchAnnotated(),
        decollate=False,
    )
    seen = []

    @trainer.on(IterationEvents.FORWARD_COMPLETED)
    def keep_grad(engine):
        engine.state.output["pred"].retain_grad()

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        out = engine.state.output
        seen.append((out["pred"].grad.as_subclass(torch.Tensor).clone(), out["label"].meta["annotated"].clone()))

    trainer.run()
    assert len(seen) == 2 * epochs
    return seen


def _conv(out_channels, *tail):
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, out_channels, 3, padding=1), *tail
    )


@pytest.mark.parametrize("setting", ["softmax-probabilities", "sigmoid-logits"])
def test_unannotated_class_gets_zero_gradient_through_the_trainer(setting):
    """A class unannotated in a sample gets exactly zero gradient on that sample's prediction of it.

    Softmax: on the probabilities (the network ends in a softmax; the loss takes probabilities) — on the logits
    the softmax couples the channels (docs/missing_labels.md). Sigmoid: on the logits themselves.
    """
    if setting == "softmax-probabilities":
        tail, cases, options = (torch.nn.Softmax(dim=1),), _cases(), {}
        leaf, plain = phidice.LeafDiceLoss(activation=None), phidice.DiceLoss(activation=None)
    else:  # channels 0..2 are classes 1..3, each its own sigmoid; the lists name channels
        tail, cases, options = (), _cases(channels=True), {"num_classes": C - 1, "background": False}
        leaf, plain = phidice.LeafDiceLoss(activation="sigmoid"), phidice.DiceLoss(activation="sigmoid")
    channels = options.get("num_classes", C)
    for grad, annotated in _trainer_gradients(_conv(channels, *tail), AnnotatedLoss(leaf), cases, **options):
        missing = (~annotated).nonzero().tolist()
        assert missing, "every batch holds a partially annotated case"
        for b, u in missing:
            assert torch.count_nonzero(grad[b, u]) == 0, f"sample {b}, class {u}"
        first = 1 if setting == "softmax-probabilities" else 0  # the annotated classes do learn
        for b, c in annotated[:, first:].nonzero().tolist():
            assert grad[b, c + first].abs().sum() > 0
    # the same trainer with the plain Dice pushes the unannotated class down: the check above can fail
    grad, annotated = _trainer_gradients(_conv(channels, *tail), plain, cases, **options)[0]
    b, u = (~annotated).nonzero()[0].tolist()
    assert grad[b, u].abs().sum() > 0
