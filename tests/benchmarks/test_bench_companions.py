"""Smoke tests of benchmarks/bench_deep_supervision.py (a few steps, resumed from its store) and
bench_fused_compound.py (one tiny case, a fresh process per memory measurement), both `slow` (on request: they
train and spawn, tens of seconds on a loaded 2-core machine); and of bench_stored.py (one tiny case, seconds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_deep_supervision_table_and_resume(tmp_path, monkeypatch):
    bench = _load("bench_deep_supervision")
    small = bench.make_data
    monkeypatch.setattr(bench, "make_data", lambda n, seed: small(16, seed))  # the script's data, 16 images
    out = tmp_path / "ds.md"
    assert bench.main(["--seeds", "1", "--steps", "2", "--batch", "2", "--out", str(out)]) == 0
    text = out.read_text()
    for policy in bench.POLICIES:
        assert f"| `{policy}` |" in text
    stored = json.loads(out.with_suffix(".json").read_text())
    assert stored["settings"]["steps"] == 2 and all(len(v) == 1 for v in stored["results"].values())
    calls = []
    monkeypatch.setattr(bench, "train", lambda *a, **k: calls.append(a) or bench.TinyUNet())
    bench.main(["--seeds", "1", "--steps", "2", "--batch", "2", "--out", str(out)])
    assert calls == []  # every run was stored: nothing is trained again


@pytest.mark.slow
def test_fused_compound_table(tmp_path):
    pytest.importorskip("monai")
    bench = _load("bench_fused_compound")
    out = tmp_path / "fc.md"
    assert bench.main(["--cases", "1,3,4,4,4", "--repeats", "1", "--out", str(out)]) == 0
    for impl in bench.IMPLS:
        assert f"| {impl} |" in out.read_text()


def _tiny_row(bench, tmp_path, case: str = "1,3,8,8,8:I") -> str:
    """The one row of ``case`` in the table that ``bench.main`` writes for that case alone (2 rounds)."""
    out = tmp_path / "table.md"
    assert bench.main(["--cases", case, "--repeats", "2", "--out", str(out)]) == 0
    row = [line for line in out.read_text().splitlines() if line.startswith(f"| {case} |")]
    assert len(row) == 1
    return row[0]


def test_stored_table_and_routes(tmp_path, monkeypatch):
    """bench_stored.py: one tiny case; its recompute route really takes the custom ops, its stored route a fresh
    buffer and its pooled route the pool, and each leaves the defaults on."""
    pytest.importorskip("monai")
    from phidice.kernels import cpu, function

    if not cpu.available():
        pytest.skip("numba kernels unavailable")
    bench = _load("bench_stored")
    assert _tiny_row(bench, tmp_path).count("|") == 12
    import torch

    from phidice.kernels import buffers

    seen = []
    original = function.EagerFusedSums.apply
    monkeypatch.setattr(function.EagerFusedSums, "apply", lambda *a: seen.append("eager") or original(*a))
    x = torch.randn(1, 3, 8, 8, 8, requires_grad=True)
    y = torch.randint(0, 3, (1, 8, 8, 8))
    loss = bench.make_loss("fused numba", "I")
    bench._step("recompute", loss)(x, y)
    assert seen == []
    buffers.empty_cache()
    bench._step("stored", loss)(x, y)
    assert seen == ["eager"] and buffers.pooled_bytes() == 0
    bench._step("pooled", loss)(x, y)
    assert seen == ["eager"] * 2 and buffers.pooled_bytes() == x.numel() * 4
    assert function._buffer_like.__module__ == "phidice.kernels.function"


def test_base_install_table(tmp_path):
    """bench_base_install.py: one tiny case, no memory children, no first-call processes, no compiled rows."""
    pytest.importorskip("monai")
    pytest.importorskip("nnunetv2")
    bench = _load("bench_base_install")
    out = tmp_path / "bi.md"
    argv = ["--cases", "1,3,4,4,4:I", "--repeats", "1", "--no-memory", "--no-first-call", "--no-compiled"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    for impl in bench.IMPLS:
        assert f"| (1, 3, 4, 4, 4), I | {impl} |" in text
    assert not any(f"| {impl} |" in text for impl in bench.COMPILED)


@pytest.mark.slow
def test_base_install_compiled_losses_equal_eager():
    """The compiled rows (inductor) compute what their eager implementation computes, value and gradient."""
    pytest.importorskip("monai")
    pytest.importorskip("nnunetv2")
    import torch

    bench = _load("bench_base_install")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, 4, generator=g, requires_grad=True)
    y = torch.randint(0, 3, (2, 4, 4, 4), generator=g)
    for impl in bench.COMPILED:
        torch._dynamo.reset()
        (ga,) = torch.autograd.grad(a := bench.make_loss(impl, "BI")(x, y), x)
        (gb,) = torch.autograd.grad(b := bench.make_loss(impl.removesuffix(", compiled"), "BI")(x, y), x)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def test_pool_step_table(tmp_path):
    """bench_pool_step.py: one tiny case; its pooled steps use the pool, and the default route is back after it
    (its fresh mode is bench_stored's ``stored`` route, checked above)."""
    from phidice.kernels import buffers, cpu, function

    if not cpu.available():
        pytest.skip("numba kernels unavailable")
    buffers.empty_cache()
    assert _tiny_row(_load("bench_pool_step"), tmp_path).count("|") == 7
    assert function._buffer_like.__module__ == "phidice.kernels.function"
    assert buffers.pooled_bytes() > 0
