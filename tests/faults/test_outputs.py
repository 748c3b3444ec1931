"""Faults around the output folder and checkpoint files."""

from __future__ import annotations

import pytest
import torch

from laser.errors import LaserConfigError
from laser.run import run
from laser.runs.checkpoint_io import AtomicCheckpointIO
from laser.runs.folder import check_writable


def test_an_unwritable_output_folder_fails_in_one_line_before_any_work(make_config, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    import laser.run as entry

    monkeypatch.setattr(entry, "build", lambda *a, **k: pytest.fail("work started despite the bad folder"))
    with pytest.raises(LaserConfigError, match="is not writable") as error:
        run(make_config(output_dir=out), out)
    assert "\n" not in str(error.value) and str(out) in str(error.value)


def test_a_full_disk_is_reported_before_any_work(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2**20, 2**20))
    with pytest.raises(LaserConfigError, match="only 1 MB free"):
        check_writable(tmp_path / "run")


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


def test_two_jobs_never_share_a_run_folder(tmp_path):
    import os

    from laser.runs.folder import claim_output_dir

    folder = tmp_path / "job0"
    folder.mkdir()
    (folder / "run.lock").write_text(str(os.getppid()))  # a live process holds the folder
    with pytest.raises(LaserConfigError, match="in use by another laser process"):
        claim_output_dir(folder, resuming=False)
    with pytest.raises(LaserConfigError, match="in use by another laser process"):
        claim_output_dir(folder, resuming=True)
    (folder / "run.lock").write_text("999999999")  # its owner is gone before saving anything: nothing to lose
    claim_output_dir(folder, resuming=False)
    assert (folder / "run.lock").read_text() == str(os.getpid())
    (folder / "run.lock").write_text("999999999")
    (folder / "config.yaml").write_text("seed: 0\n")  # ... after saving its config: an unfinished run
    with pytest.raises(LaserConfigError, match="holds an unfinished run"):
        claim_output_dir(folder, resuming=False)
    claim_output_dir(folder, resuming=True)  # a resume takes the stale lock over
    assert (folder / "run.lock").read_text() == str(os.getpid())
