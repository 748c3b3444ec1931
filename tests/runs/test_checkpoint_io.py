"""Checkpoints written atomically: a write killed midway keeps the previous checkpoint and leaves no temp."""

from __future__ import annotations

import pytest
import torch

from laser.runs.checkpoint_io import AtomicCheckpointIO


def test_a_checkpoint_write_killed_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed while serialising")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    import os

    def dies_before_rename(src, dst):
        raise KeyboardInterrupt("killed after writing the temp file")

    monkeypatch.setattr(os, "replace", dies_before_rename)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 3}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind
