"""Counting device memory the way the caching allocator does: the bytes of every live tensor storage.

`LiveBytes` is a `TorchDispatchMode` that sees every storage an op creates (fake or real), adds its
bytes while it lives and keeps the peak. Under `FakeTensorMode` nothing is allocated, so an 8B model's
step can be traced on a laptop CPU; on real tensors it counts what `torch.cuda.max_memory_allocated`
counts on a GPU (minus the allocator's rounding to 512-byte blocks). Views share their base's storage
and in-place ops create none, so neither is counted twice.

`allocator_peak` measures a real CPU run independently of this mode, from the CPU allocator's own
events (the profiler's allocation records): the plan's validation compares the two.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_NO_STORAGE = {torch.ops.prim.device.default}  # queried thousands of times per step, returns no tensor


class LiveBytes(TorchDispatchMode):
    """Live bytes of the storages created under this mode, and their peak since `reset_peak`.

    Args:
        device_type: count only storages on this kind of device ("cpu" for a fake CPU trace).
    """

    def __init__(self, device_type: str = "cpu") -> None:
        super().__init__()
        self.device_type = device_type
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def reset_peak(self) -> None:
        """Start a new peak from what is live now."""
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _NO_STORAGE:
            return out
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor) and value.device.type == self.device_type:
                self._track(value.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata  # one StorageImpl, however many tensors view it
        if key in self._seen:
            return
        size = storage.nbytes()
        self._seen.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self.live -= size
        self._seen.discard(key)


def storage_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind `tensors` (any nesting of lists, tuples and dicts)."""
    seen: dict[int, int] = {}
    for value in tree_flatten(tensors)[0]:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            seen[storage._cdata] = storage.nbytes()
    return sum(seen.values())


def allocator_peak(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(peak bytes above the start, fn's result) of `fn()` on the CPU, from the CPU allocator's own
    records (`torch.profiler` with `profile_memory`): every allocation and free, in order. Slow (the
    profiler records every op): for small validation runs, not for planning."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    allocations = [e for e in _walk(prof.profiler.kineto_results.experimental_event_tree())
                   if e.tag == _EventType.Allocation and e.extra_fields.device.type == "cpu"]
    allocations.sort(key=lambda e: e.start_time_ns)
    live = peak = 0
    for event in allocations:
        live += event.extra_fields.alloc_size
        peak = max(peak, live)
    return peak, result


def _walk(nodes: list) -> Any:
    for node in nodes:
        yield node
        yield from _walk(node.children)
