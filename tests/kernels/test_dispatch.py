"""When the fused path applies, which backend runs, and the errors when it is forced but cannot."""

from __future__ import annotations

import pytest
import torch

import phidice
from phidice import kernels
from phidice.core.config import DiceConfig
from phidice.kernels import cpu, fallback
from phidice.sums import prepare_target


def _reason(x, y, activation="softmax", squared=False, **kw):
    mask = kw.pop("mask", None)
    prepared = prepare_target(x, y, DiceConfig(activation=activation, **kw), mask)
    return kernels.fused_unsupported_reason(x, prepared, activation=activation, squared=squared)


def test_reasons():
    x = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    assert _reason(x, y) is None
    assert _reason(x, y, activation="sigmoid") is None
    assert _reason(x, y, ignore_index=7, mask=torch.ones(2, 1, 4, 4)) is None
    assert "integer labels" in _reason(x, torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float())
    assert "squared" in _reason(x, y, squared=True)
    assert "activation" in _reason(x.softmax(1), y, activation=None)
    assert "per-class mask" in _reason(x, y, mask=torch.ones(2, 3, 4, 4))
    assert "grad" in _reason(x, y, mask=torch.ones(2, 1, 4, 4, requires_grad=True))


def test_fused_true_raises_when_it_does_not_apply():
    x = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    with pytest.raises(ValueError, match="squared"):
        phidice.dice_loss(x, y, squared=True, fused=True)
    # "auto" falls back to the reference path
    a = phidice.dice_loss(x, y, squared=True, fused="auto")
    b = phidice.dice_loss(x, y, squared=True, fused=False)
    torch.testing.assert_close(a, b)


def test_select_backend(monkeypatch):
    monkeypatch.delenv("PHIDICE_FUSED_BACKEND", raising=False)
    cpu_dev = torch.device("cpu")
    expected = "numba" if cpu.available() else "torch"
    assert kernels.select_backend(cpu_dev, torch.float32)[0] == expected
    assert kernels.select_backend(cpu_dev, torch.float64) == ("torch", fallback)
    assert kernels.select_backend(cpu_dev, torch.bfloat16)[0] == "torch"
    monkeypatch.setenv("PHIDICE_FUSED_BACKEND", "torch")
    assert kernels.select_backend(cpu_dev, torch.float32)[0] == "torch"
    monkeypatch.setenv("PHIDICE_FUSED_BACKEND", "numba")
    with pytest.raises(ValueError, match="numba"):
        kernels.select_backend(cpu_dev, torch.float64)
    monkeypatch.setenv("PHIDICE_FUSED_BACKEND", "bogus")
    with pytest.raises(ValueError, match="PHIDICE_FUSED_BACKEND"):
        kernels.get_backend()
    previous = kernels.set_backend("torch")  # the function wins over the environment
    try:
        assert kernels.select_backend(cpu_dev, torch.float32)[0] == "torch"
    finally:
        kernels.set_backend(previous)
    with pytest.raises(ValueError, match="backend"):
        kernels.set_backend("cuda")


def test_fallback_is_used_when_forced(monkeypatch):
    """The forced fallback is really what runs: its forward is called."""
    calls = []
    original = fallback.forward

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(fallback, "forward", spy)
    monkeypatch.setenv("PHIDICE_FUSED_BACKEND", "torch")
    phidice.dice_loss(torch.randn(1, 2, 5), torch.randint(0, 2, (1, 5)), fused=True)
    assert calls == [1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_auto_never_picks_the_slower_torch_path_on_the_cpu(monkeypatch, dtype):
    """Without numba (float32) or for a dtype numba does not take, ``fused="auto"`` runs the reference path on the
    CPU, the faster one there (BENCHMARKS.md, "Base install vs MONAI"); ``fused=True`` and a forced backend still run
    the torch fallback, with the same loss."""
    calls = []
    original = fallback.forward

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(fallback, "forward", spy)
    monkeypatch.delenv("PHIDICE_FUSED_BACKEND", raising=False)
    monkeypatch.setattr(cpu, "_kernels", None)
    monkeypatch.setattr(cpu, "_import_error", "numba not installed (simulated)")
    x, y = torch.randn(2, 3, 4, 5, dtype=dtype), torch.randint(0, 3, (2, 4, 5))
    cpu_dev = torch.device("cpu")
    assert "reference path is faster" in kernels.auto_prefers_reference(cpu_dev, dtype)
    auto = phidice.dice_loss(x, y, phi="BI")
    assert calls == []
    fused = phidice.dice_loss(x, y, phi="BI", fused=True)
    assert calls == [1]
    monkeypatch.setenv("PHIDICE_FUSED_BACKEND", "torch")
    assert kernels.auto_prefers_reference(cpu_dev, dtype) is None
    forced = phidice.dice_loss(x, y, phi="BI")
    assert calls == [1, 1]
    torch.testing.assert_close(auto, fused)
    torch.testing.assert_close(forced, fused)
    assert kernels.auto_prefers_reference(torch.device("cuda"), dtype) is None  # CUDA: Triton or fallback


def _refuse_import(monkeypatch, refused: str, error: ImportError):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == refused:
            raise error
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_unusable_numba_falls_back_to_torch(monkeypatch):
    """numba installed but unusable (its own ImportError, e.g. built for another NumPy): the torch kernels."""
    monkeypatch.setattr(cpu, "_kernels", None)
    monkeypatch.setattr(cpu, "_import_error", None)
    _refuse_import(monkeypatch, "numba", ImportError("Numba needs NumPy 2.3 or less"))
    assert cpu.kernels() is None and "Numba needs NumPy 2.3 or less" in cpu._import_error
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    assert not cpu.available()
    torch.testing.assert_close(phidice.dice_loss(x, y, fused=True), phidice.dice_loss(x, y, fused=False))


def test_a_broken_kernel_module_is_an_error(monkeypatch):
    """An ImportError inside phidice's own numba module is raised, not hidden behind the slower path."""
    import sys

    pytest.importorskip("numba")
    monkeypatch.setattr(cpu, "_kernels", None)
    monkeypatch.setattr(cpu, "_import_error", None)
    monkeypatch.delattr(kernels, "_numba_cpu", raising=False)
    monkeypatch.setitem(sys.modules, "phidice.kernels._numba_cpu", None)
    with pytest.raises(ImportError, match="_numba_cpu"):
        cpu.kernels()
