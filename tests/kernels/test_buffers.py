"""The CPU buffer pool: memory is handed out again only once nothing refers to it.

The numba forward stores the probabilities in a pooled buffer which becomes the gradient; these tests check the
pool's ownership rule on every way a caller can keep that memory (the tensor, a slice, a view, its ``.numpy()``,
its storage), its limit and environment variable, and the training-step uses: reuse across steps, gradient
accumulation, and a network in front of the loss.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import threading

import pytest
import torch

import phidice
from phidice import kernels
from phidice.kernels import buffers, cpu

SHAPE = (2, 3, 1000)
NBYTES = 2 * 3 * 1000 * 4


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    monkeypatch.delenv("PHIDICE_CPU_BUFFER_POOL", raising=False)
    previous = buffers.set_limit(None)
    buffers.empty_cache()
    yield
    monkeypatch.delenv("PHIDICE_CPU_BUFFER_POOL", raising=False)
    buffers.set_limit(previous)
    buffers.empty_cache()


def test_memory_is_reused_once_the_tensor_is_freed():
    t = buffers.empty(SHAPE, torch.float32)
    assert t.shape == SHAPE and t.dtype == torch.float32 and t.is_contiguous()
    ptr = t.data_ptr()
    del t
    assert buffers.empty(SHAPE, torch.float32).data_ptr() == ptr
    assert buffers.pooled_bytes() == NBYTES


@pytest.mark.parametrize(
    "keep",
    [
        lambda t: t,
        lambda t: t[1],
        lambda t: t.view(-1),
        lambda t: t.numpy(),
        lambda t: t.untyped_storage(),
        lambda t: torch.empty(0).set_(t.untyped_storage()),
    ],
    ids=["tensor", "slice", "view", "numpy", "storage", "set_"],
)
def test_memory_in_use_is_never_handed_out(keep):
    t = buffers.empty(SHAPE, torch.float32)
    t.fill_(7.0)
    kept = keep(t)
    ptr = t.data_ptr()
    del t
    other = buffers.empty(SHAPE, torch.float32)
    other.fill_(-1.0)
    assert other.data_ptr() != ptr
    values = torch.empty(0).set_(kept) if isinstance(kept, torch.UntypedStorage) else torch.as_tensor(kept)
    assert torch.all(values == 7.0)
    del kept, values, other
    assert buffers.empty(SHAPE, torch.float32).data_ptr() == ptr  # free again: the first buffer of its size


def test_a_reference_cycle_keeps_its_buffer_until_collected():
    t = buffers.empty(SHAPE, torch.float32)
    ptr = t.data_ptr()
    cycle: list = [t]
    cycle.append(cycle)
    del t
    assert buffers.empty(SHAPE, torch.float32).data_ptr() != ptr
    del cycle
    gc.collect()
    assert buffers.empty(SHAPE, torch.float32).data_ptr() == ptr


def test_a_smaller_request_takes_a_free_buffer_up_to_twice_its_size():
    t = buffers.empty((1000,), torch.float32)
    ptr = t.data_ptr()
    del t
    smaller = buffers.empty((2, 300), torch.float32)  # 600 ≤ 1000 ≤ 1200: a view of the buffer's start
    assert smaller.data_ptr() == ptr and smaller.shape == (2, 300) and smaller.is_contiguous()
    del smaller
    tiny = buffers.empty((400,), torch.float32)  # 1000 > 2 × 400: a buffer of its own, the stale one freed
    assert tiny.data_ptr() != ptr
    assert buffers.pooled_bytes() == 400 * 4


def test_sizes_that_come_and_go_do_not_pile_up():
    """A miss frees the free buffers of that dtype: the pool holds the sizes in use, not every size seen."""
    for n in (1000, 5000, 300, 20000, 700, 9000, 100, 3000):
        t = buffers.empty((n,), torch.float32)
        t.fill_(1.0)
        del t
        assert buffers.pooled_bytes() == n * 4


def test_buffers_in_use_together_are_each_reused():
    """Deep supervision: the levels' buffers are held at once, and each finds its own again in the next step."""
    shapes = [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    first = [buffers.empty(s, torch.float32) for s in shapes]
    ptrs = [t.data_ptr() for t in first]
    del first
    again = [buffers.empty(s, torch.float32) for s in shapes]
    assert [t.data_ptr() for t in again] == ptrs
    assert buffers.pooled_bytes() == sum(math.prod(s) * 4 for s in shapes)


def test_an_empty_tensor_is_not_pooled():
    assert buffers.empty((2, 0, 5), torch.float32).shape == (2, 0, 5) and buffers.pooled_bytes() == 0


def test_limit_zero_turns_the_pool_off():
    buffers.set_limit(0)
    t = buffers.empty(SHAPE, torch.float32)
    assert t.shape == SHAPE and buffers.pooled_bytes() == 0


def test_a_buffer_over_the_limit_is_not_pooled():
    buffers.set_limit(NBYTES - 1)
    buffers.empty(SHAPE, torch.float32)
    assert buffers.pooled_bytes() == 0
    small = buffers.empty((10,), torch.float32)
    assert buffers.pooled_bytes() == 40
    del small


def test_lowering_the_limit_frees_unused_buffers_and_keeps_those_in_use():
    held = buffers.empty(SHAPE, torch.float32)
    held.fill_(3.0)
    buffers.empty((10, 10), torch.float32)  # freed at once: its buffer is free in the pool
    assert buffers.pooled_bytes() == NBYTES + 400
    buffers.set_limit(NBYTES)
    assert buffers.pooled_bytes() == NBYTES
    assert torch.all(held == 3.0)
    new = buffers.empty((10, 10), torch.float32)  # no room next to the held buffer: not pooled
    assert buffers.pooled_bytes() == NBYTES
    del new


def test_empty_cache_leaves_tensors_in_use_valid():
    held = buffers.empty(SHAPE, torch.float32)
    held.fill_(5.0)
    buffers.empty_cache()
    assert buffers.pooled_bytes() == 0
    other = buffers.empty(SHAPE, torch.float32)
    other.fill_(0.0)
    assert other.data_ptr() != held.data_ptr() and torch.all(held == 5.0)


def test_other_dtypes_are_plain_tensors():
    t = buffers.empty(SHAPE, torch.bfloat16)
    assert t.dtype == torch.bfloat16 and t.shape == SHAPE and buffers.pooled_bytes() == 0


def test_environment_variable_sets_the_limit(monkeypatch):
    monkeypatch.setenv("PHIDICE_CPU_BUFFER_POOL", "0")
    buffers.empty(SHAPE, torch.float32)
    assert buffers.limit() == 0 and buffers.pooled_bytes() == 0
    monkeypatch.setenv("PHIDICE_CPU_BUFFER_POOL", str(NBYTES))
    assert buffers.limit() == NBYTES


@pytest.mark.parametrize("raw", ["1GB", "-1", "1.5"])
def test_a_bad_environment_value_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("PHIDICE_CPU_BUFFER_POOL", raw)
    with pytest.raises(ValueError, match="PHIDICE_CPU_BUFFER_POOL must be a whole number of bytes"):
        buffers.empty(SHAPE, torch.float32)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_set_limit_rejects_what_is_not_a_byte_count(bad):
    with pytest.raises(ValueError, match="nbytes must be an int ≥ 0 or None"):
        buffers.set_limit(bad)


def test_threads_never_share_a_buffer():
    got: list = []
    barrier = threading.Barrier(8)

    def take():
        barrier.wait()
        got.append(buffers.empty(SHAPE, torch.float32))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({t.data_ptr() for t in got}) == 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_while_the_pool_is_locked_leaves_the_child_a_working_pool():
    with buffers._lock:
        pid = os.fork()
        if pid == 0:  # the child: a lock copied held would hang here (the alarm then kills it)
            signal.alarm(10)
            ok = buffers.empty(SHAPE, torch.float32).shape == SHAPE
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_pooled_tensor_cannot_grow():
    t = buffers.empty(SHAPE, torch.float32)
    with pytest.raises(RuntimeError, match="not resizable"):
        t.resize_(2 * t.numel())
    t.resize_(10)  # shrinking stays within the buffer
    assert t.shape == (10,)


# --- the pool in a training step (numba's stored-probabilities route) -------------------------------------------

needs_numba = pytest.mark.skipif(not cpu.available(), reason=f"numba kernels unavailable: {cpu._import_error}")


@pytest.fixture
def numba_backend():
    previous = kernels.set_backend("numba")
    yield
    kernels.set_backend(previous)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, 4, 6, 50, generator=g) * 3).requires_grad_()
    y = torch.randint(0, 4, (2, 1, 6, 50), generator=g)
    return x, y


def _reference_grad(x, y):
    (g,) = torch.autograd.grad(phidice.DiceLoss(phi="BI", eps=1e-5, fused=False)(x, y), x)
    return g


@needs_numba
def test_a_freed_gradient_is_next_steps_buffer(numba_backend):
    x, y = _inputs()
    loss = phidice.DiceLoss(phi="BI", eps=1e-5, fused=True)
    loss(x, y).backward()
    first = x.grad.data_ptr()
    x.grad = None
    loss(x, y).backward()
    assert x.grad.data_ptr() == first
    torch.testing.assert_close(x.grad, _reference_grad(x, y), rtol=1e-5, atol=1e-6)


@needs_numba
def test_accumulated_gradients_are_not_overwritten(numba_backend):
    """zero_grad(set_to_none=False)-style accumulation: x.grad holds a pooled buffer across steps."""
    x, y = _inputs(1)
    loss = phidice.DiceLoss(phi="BI", eps=1e-5, fused=True)
    for _ in range(3):
        loss(x, y).backward()
    torch.testing.assert_close(x.grad, 3 * _reference_grad(x, y), rtol=1e-5, atol=1e-6)


@needs_numba
def test_a_network_in_front_of_the_loss(numba_backend):
    """The pooled gradient flows into a convolution's backward; parameter gradients equal the reference path's."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3, padding=1)
    inp = torch.randn(2, 3, 6, 50)
    _, y = _inputs(2)

    def grads(fused):
        net.zero_grad(set_to_none=True)
        phidice.DiceLoss(phi="BI", eps=1e-5, fused=fused)(net(inp), y).backward()
        return [p.grad.clone() for p in net.parameters()]

    ref = grads(False)
    for _ in range(3):  # the later steps run on the reused buffer
        for a, b in zip(grads(True), ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    assert buffers.pooled_bytes() == 2 * 4 * 6 * 50 * 4
