import numpy as np
import pytest
import torch

from phidice.experiments.data import make_dataset
from phidice.experiments.train import RunConfig, _batches, epsilon_for, make_loss


def test_generator_is_deterministic_and_seeded():
    a = make_dataset("binary", n=12, size=16, seed=3)
    b = make_dataset("binary", n=12, size=16, seed=3)
    c = make_dataset("binary", n=12, size=16, seed=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (12, 1, 16, 16) and a.images.dtype == np.float32
    assert a.labels.shape == (12, 16, 16) and set(np.unique(a.labels)) <= {0, 1}


def test_groups_lesions_and_partial_labels():
    d = make_dataset("binary", n=40, size=32, seed=0, minority=0.25)
    assert (d.groups == "lgg").sum() == 10 and (d.groups == "hgg").sum() == 30
    assert (d.labels.sum((1, 2)) > 0).all()  # every image holds one lesion
    p = d.partial()
    assert (p.labels[d.groups == "lgg"] == 0).all()
    assert np.array_equal(p.labels[d.groups == "hgg"], d.labels[d.groups == "hgg"])
    assert (d.labels[d.groups == "lgg"] > 0).any()  # the original is untouched
    ann = d.annotated(partial=True)
    assert ann.shape == (40, 1) and np.array_equal(ann[:, 0], d.groups == "hgg")
    assert d.annotated(partial=False).all()


def test_multiclass_groups_and_missing_class():
    d = make_dataset("multiclass", n=16, size=32, seed=1)
    assert d.num_classes == 4 and set(np.unique(d.labels)) <= {0, 1, 2, 3}
    p = d.partial()
    es = d.groups == "es"
    assert not (p.labels[es] == 2).any() and (d.labels[es] == 2).any()
    assert np.array_equal(p.labels[~es], d.labels[~es])
    ann = d.annotated(partial=True)
    assert np.array_equal(ann[:, 2], ~es) and ann[:, [0, 1, 3]].all()


@pytest.mark.parametrize("kwargs", [dict(task="x"), dict(size=20), dict(minority=1.0)])
def test_generator_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_dataset(**{"n": 4, **kwargs})


def test_epsilon_is_mean_volume_of_training_labels():
    d = make_dataset("binary", n=20, size=16, seed=2)
    for labels in (d.labels, d.partial().labels):
        eps = epsilon_for(labels, 1)
        assert eps.shape == (1,)
        assert float(eps[0]) == pytest.approx(labels.sum((1, 2)).mean())
    m = make_dataset("multiclass", n=8, size=16, seed=2)
    eps = epsilon_for(m.labels, 4)
    ref = [(m.labels == c).sum((1, 2)).mean() for c in range(4)]
    assert eps.tolist() == pytest.approx(ref)


def test_losses_of_every_config_run():
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[0, 2:5, 2:5] = 1
    a = torch.tensor([[True], [False]])
    for cfg in ("I", "BI", "I_eps"):
        v = make_loss(cfg, 1, torch.tensor([9.0], dtype=torch.float64))(x, y, a)
        assert torch.isfinite(v)
    xm = torch.randn(2, 4, 8, 8)
    ym = torch.randint(0, 4, (2, 8, 8))
    am = torch.ones(2, 4, dtype=torch.bool)
    am[1, 2] = False
    ym[1][ym[1] == 2] = 0  # unannotated classes are labelled background
    for cfg in ("I", "BI", "I_eps", "leaf", "marginal"):
        assert torch.isfinite(make_loss(cfg, 4, torch.tensor([50.0, 5.0, 6.0, 7.0]))(xm, ym, am))
    with pytest.raises(ValueError, match="eps_vector"):
        make_loss("I_eps", 1)


def test_ieps_uses_epsilon_and_i_is_small():
    # I_ε with a large ε gives an empty image a real loss gradient; I (ε = 1e-7) almost none
    x = torch.full((1, 1, 8, 8), -1.0, requires_grad=True)
    y = torch.zeros(1, 8, 8, dtype=torch.long)
    a = torch.tensor([[False]])
    make_loss("I_eps", 1, torch.tensor([20.0]))(x, y, a).backward()
    big = x.grad.abs().sum().item()
    x.grad = None
    make_loss("I", 1)(x, y, a).backward()
    assert big > 1e-3 and x.grad.abs().sum().item() < 1e-6 * big


def test_runconfig_validates():
    with pytest.raises(ValueError, match="config"):
        RunConfig("binary", "X", 1, "full")
    with pytest.raises(ValueError, match="labelling"):
        RunConfig("binary", "I", 1, "half")
    with pytest.raises(ValueError, match="batch_size"):
        RunConfig("binary", "I", 0, "full")


def test_batches_split_across_ranks_like_a_distributed_sampler():
    single = list(_batches(10, 4, 6, seed=1, rank=0, world=1))
    assert all(len(b) == 4 for b in single)
    assert sorted(np.concatenate(single[:2])[:10].tolist()) != [] and len(set(np.concatenate(single)[:10])) == 10
    r0 = list(_batches(10, 2, 6, seed=1, rank=0, world=2))
    r1 = list(_batches(10, 2, 6, seed=1, rank=1, world=2))
    for s, a, b in zip(single, r0, r1):
        assert sorted(s.tolist()) == sorted(np.concatenate([a, b]).tolist())
