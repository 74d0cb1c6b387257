"""The MONAI counterpart of ``phidice nnunet merge``: one data list, labels remapped on the fly, ``annotated``
handed to the leaf Dice in a real ``SupervisedTrainer``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("monai")
pytest.importorskip("ignite")
nib = pytest.importorskip("nibabel")

from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.transforms import Compose

import phidice
from phidice.integrations.monai import (
    AnnotatedLoss,
    PrepareBatchAnnotated,
    RemapLabelsd,
    pool_data_list,
    pooled_transforms,
)

SHAPE = (8, 8, 4)


def _write_raw(root, ident, name, labels, cases, seed):
    rng = np.random.default_rng(seed)
    ds = root / f"Dataset{ident:03d}_{name}"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    for case in cases:
        lab = np.zeros(SHAPE, np.uint8)
        for i, v in enumerate(sorted(v for v in labels.values() if v)):
            lab[2 * i : 2 * i + 2, 2:6, :] = v
        nib.save(nib.Nifti1Image(lab, np.diag([1.5, 1.5, 3.0, 1.0])), str(ds / "labelsTr" / f"{case}.nii.gz"))
        img = (lab * 1.0 + rng.normal(0, 0.1, SHAPE)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.diag([1.5, 1.5, 3.0, 1.0])), str(ds / "imagesTr" / f"{case}_0000.nii.gz"))
    (ds / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": len(cases), "file_ending": ".nii.gz"}
        )
    )
    return ds


@pytest.fixture
def sources(tmp_path):
    a = _write_raw(tmp_path, 701, "A", {"background": 0, "liver": 1, "spleen": 2}, ["c0", "c1"], 0)
    b = _write_raw(tmp_path, 702, "B", {"background": 0, "kidney": 1, "Liver": 2}, ["c1", "c2"], 1)
    # a Decathlon-style list: labels value → name, paths relative to the list
    lab = np.zeros(SHAPE, np.uint8)
    lab[:3] = 1
    (tmp_path / "task03").mkdir()
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(tmp_path / "task03" / "t0.nii.gz"))
    nib.save(nib.Nifti1Image(lab.astype(np.float32), np.eye(4)), str(tmp_path / "task03" / "t0_img.nii.gz"))
    lst = tmp_path / "task03.json"
    lst.write_text(
        json.dumps(
            {
                "labels": {"0": "background", "1": "spleen"},
                "training": [{"image": "task03/t0_img.nii.gz", "label": "task03/t0.nii.gz", "case": "d0"}],
            }
        )
    )
    return tmp_path, a, b, lst


def test_data_list_remaps_and_annotates(sources):
    tmp, a, b, lst = sources
    out = tmp / "pool.json"
    data = pool_data_list([a, b, lst], out, raw_root=tmp)
    assert json.loads(out.read_text()) == data
    assert data["labels"] == {"0": "background", "1": "liver", "2": "spleen", "3": "kidney"}
    items = {(i["source"], i["case"]): i for i in data["training"]}
    assert set(items) == {
        ("Dataset701_A", "D701__c1"),
        ("Dataset701_A", "c0"),
        ("Dataset702_B", "D702__c1"),
        ("Dataset702_B", "c2"),
        ("task03", "d0"),
    }
    assert items[("Dataset702_B", "c2")]["annotated"] == [1, 3]
    assert items[("task03", "d0")]["annotated"] == [2]
    t = Compose(pooled_transforms(4))
    d = t(items[("Dataset702_B", "c2")])
    src = np.asarray(nib.load(str(b / "labelsTr" / "c2.nii.gz")).dataobj)
    np.testing.assert_array_equal(d["label"][0].numpy(), np.array([0, 3, 1])[src])  # kidney 1→3, Liver 2→1
    assert d["annotated"].tolist() == [True, True, False, True]
    assert tuple(float(s) for s in d["label"].pixdim[:3]) == (1.5, 1.5, 3.0)
    d = t(items[("task03", "d0")])  # the Decathlon item's spleen (1) is merged spleen (2)
    np.testing.assert_array_equal(
        d["label"][0].numpy(), 2 * (np.arange(SHAPE[0]) < 3)[:, None, None] * np.ones(SHAPE, np.uint8)
    )
    assert d["annotated"].tolist() == [True, False, True, False]
    c0 = dict(items[("Dataset701_A", "c0")])
    c0["label_map"] = [0, 1]  # spleen (2) undeclared: the remap names the case
    with pytest.raises(RuntimeError) as err:
        t(c0)
    assert "holds label value(s) [2]" in str(err.value.__cause__) and "c0_0000" in str(err.value.__cause__)


def test_remap_refuses_undeclared_values():
    t = RemapLabelsd("label")
    with pytest.raises(ValueError, match=r"label value\(s\) \[5\]"):
        t({"label": np.array([[0, 5]]), "label_map": [0, 1, 2]})
    with pytest.raises(ValueError, match=r"\[2\]"):
        t({"label": np.array([[0, 2]]), "label_map": [0, 1, -1]})
    with pytest.raises(KeyError, match="label_map"):
        t({"label": np.array([[0]])})


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_supervised_trainer_on_the_pool(sources, activation):
    """Two iterations of a real SupervisedTrainer with the leaf Dice on the pooled data list (softmax; per-class
    sigmoid outputs with the Dice + BCE on annotated classes only)."""
    tmp, a, b, _ = sources
    data = pool_data_list([a, b], raw_root=tmp)
    sigmoid = activation == "sigmoid"
    loader = DataLoader(Dataset(data["training"], Compose(pooled_transforms(4))), batch_size=2)
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 4, 3, padding=1)
    leaf = (
        phidice.LeafDiceCELoss(phi="I", activation="sigmoid", include_background=False)
        if sigmoid
        else phidice.LeafDiceLoss(phi="I", include_background=False)
    )
    loss = AnnotatedLoss(leaf)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=loss,
        prepare_batch=PrepareBatchAnnotated(),
        decollate=False,
    )
    seen = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        label = engine.state.output["label"]
        seen.append((label.meta["annotated"].clone(), float(engine.state.output["loss"].detach())))

    trainer.run()
    assert len(seen) == 2 and all(np.isfinite(v) for _, v in seen)
    rows = torch.cat([r for r, _ in seen])
    # cases of A annotate liver + spleen, cases of B kidney + liver (and the background)
    assert rows.tolist() == [[True, True, True, False]] * 2 + [[True, True, False, True]] * 2


def test_the_docs_example_runs(sources, tmp_path, monkeypatch):
    """The MONAI block of docs/pooling.md, on the two sources here (one epoch on the CPU, small crops)."""
    import re
    from pathlib import Path

    root, a, _, lst = sources
    doc = (Path(__file__).resolve().parents[3] / "docs" / "pooling.md").read_text()
    block = re.search(
        r"<!-- run by tests/integrations/monai/test_monai_pooling.py.*?```python\n(.*?)```", doc, flags=re.DOTALL
    ).group(1)
    for old, new in (
        ('"/data/nnUNet_raw/Dataset701_Liver"', repr(str(a))),
        ('"/data/Task09_Spleen/dataset.json"', repr(str(lst))),
        ('labels="MAP.json"', "labels=None"),
        ("(96, 96, 96)", "(8, 8, 4)"),
        ('torch.device("cuda"), max_epochs=100', 'torch.device("cpu"), max_epochs=1'),
    ):
        assert old in block, old
        block = block.replace(old, new)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "docs/pooling.md", "exec"), namespace)
    assert namespace["K"] == 3 and namespace["trainer"].state.iteration == 2  # 3 items, batches of 2
    assert (tmp_path / "pool.json").is_file()
