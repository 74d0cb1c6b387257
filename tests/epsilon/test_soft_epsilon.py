"""The ε heuristic and ``explain`` on soft targets: E[Σ y] over soft volumes."""

import numpy as np
import pytest
import torch

import phidice


def _soft_batch(seed=0, B=4, C=3, S=(6, 5)):
    rng = np.random.default_rng(seed)
    raters = rng.integers(0, C, size=(3, B, *S))
    raters[:, 1][raters[:, 1] == 2] = 0  # class 2 absent from image 1
    return np.moveaxis(np.eye(C)[raters], -1, 2).mean(0), raters[0]


def test_soft_volumes_are_the_mean_soft_sum():
    y, _ = _soft_batch()
    eps = phidice.estimate_epsilon(torch.tensor(y), soft=True, progress=False)
    torch.testing.assert_close(eps, torch.tensor(y.reshape(4, 3, -1).sum(-1).mean(0)), rtol=0, atol=1e-12)
    stats = phidice.epsilon.epsilon_stats(
        list(y), soft=True, progress=False, phi="BI", batch_size=2, positives_only=True
    )
    assert stats.n_positive.tolist() == [4, 4, 3]
    np.testing.assert_allclose(stats.volume_sum, y.reshape(4, 3, -1).sum((0, 2)))


def test_one_hot_soft_maps_equal_the_labels():
    _, labels = _soft_batch(1)
    onehot = np.moveaxis(np.eye(3)[labels], -1, 1)
    for phi in ("I", "BI"):
        a = phidice.estimate_epsilon(labels, num_classes=3, phi=phi, batch_size=3, progress=False)
        b = phidice.estimate_epsilon(onehot, phi=phi, batch_size=3, soft=True, progress=False)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_soft_errors(tmp_path):
    y, _ = _soft_batch(2)
    with pytest.raises(ValueError, match=r"soft map values must lie in \[0, 1\]; got values in \[0, 1.5\]"):
        phidice.estimate_epsilon(np.where(y > 0.9, 1.5, y), soft=True, progress=False)
    with pytest.raises(ValueError, match="ignore_index applies to integer label maps"):
        phidice.estimate_epsilon(y, soft=True, ignore_index=255, progress=False)
    with pytest.raises(ValueError, match="soft=True reads soft maps from arrays"):
        phidice.estimate_epsilon(str(tmp_path / "x.nii.gz"), soft=True, progress=False)


def test_explain_accepts_soft_targets():
    y, labels = _soft_batch(3)
    soft = phidice.explain(phi="I", eps="auto", labels=y, soft=True, batch_size=2)
    expected = y.reshape(4, 3, -1).sum(-1)
    assert soft.classes == [1, 2]
    np.testing.assert_allclose(soft.eps, expected[:, 1:].mean(0))
    hard = phidice.explain(phi="I", eps="auto", labels=labels, batch_size=2)
    assert hard.eps != soft.eps  # soft volumes are not the first rater's
