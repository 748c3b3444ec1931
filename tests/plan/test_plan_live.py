"""Counting live tensor storages (laser/plan/live.py): the measure every plan figure is made of."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from laser.plan.live import LiveBytes, allocator_peak, storage_bytes


def test_live_bytes_adds_each_new_storage_once_and_subtracts_it_when_freed():
    with LiveBytes() as live:
        a = torch.empty(1000)  # 4000 bytes
        b = torch.empty(2000)  # 8000
        view, _ = a[:10], a.add_(1)  # a view and an in-place op: no new storage
        assert (live.live, live.peak) == (12000, 12000)
        del b
        assert live.live == 4000
        c = torch.empty(500, dtype=torch.float64)  # 4000
        assert (live.live, live.peak) == (8000, 12000)
        live.reset_peak()
        assert live.peak == 8000
    del a, view, c


def test_under_fake_tensors_nothing_is_allocated_but_everything_is_counted():
    with FakeTensorMode(), LiveBytes() as live:
        huge = torch.empty(2**40, dtype=torch.uint8)  # a terabyte that does not exist
        assert live.live == 2**40
        del huge
        assert live.live == 0 and live.peak == 2**40


def test_storage_bytes_counts_shared_storage_once():
    weights = torch.zeros(100)
    assert storage_bytes([weights, weights[:50], {"again": weights}, torch.zeros(10)]) == 440


def tiny_step() -> torch.Tensor:
    x = torch.randn(64, 256, requires_grad=True)
    w = torch.randn(256, 256, requires_grad=True)
    loss = torch.tanh(x @ w).pow(2).sum()
    loss.backward()
    return loss.detach()


def test_live_bytes_agrees_with_the_cpu_allocator_on_a_forward_and_backward():
    """Two independent measures of one real computation: the dispatch mode (tensor storages) and the
    CPU allocator's own records (the profiler): within 5% (the allocator also sees a few internal buffers)."""
    counted = LiveBytes()
    with counted:
        tiny_step()
    allocated, _ = allocator_peak(tiny_step)
    assert abs(counted.peak - allocated) <= 0.05 * allocated, (counted.peak, allocated)
