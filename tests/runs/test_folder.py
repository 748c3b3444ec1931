"""The run folder: checked before any work, never overwritten, never shared by two jobs, and resumed (or refused) in one line."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from laser.errors import LaserConfigError
from laser.run import run
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


def test_a_finished_run_folder_is_never_overwritten(make_config, tmp_path):
    out = tmp_path / "run"
    run(make_config(["laser.iterations=1"]), out)
    before = (out / "results.json").read_text()
    with pytest.raises(LaserConfigError, match="already holds a run"):
        run(make_config(["laser.iterations=1"]), out)
    assert (out / "results.json").read_text() == before


def test_resume_of_a_folder_without_checkpoint_is_refused(make_config, tmp_path):
    with pytest.raises(LaserConfigError, match="no such folder"):
        run(make_config([f"resume={tmp_path / 'nothing'}"]), tmp_path / "nothing")


def test_resume_of_a_run_killed_before_it_saved_anything_gives_the_command_that_starts_it(make_config, tmp_path):
    """Killed during start-up: Hydra wrote .hydra/overrides.yaml and the lock exists, but no config.yaml.
    The resume says nothing was saved and prints the command; that command then runs in the same folder."""
    import shlex


    out = tmp_path / "early"
    (out / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(["laser.iterations=1", "seed=3"]), out / ".hydra" / "overrides.yaml")
    (out / "run.lock").write_text("999999999")  # its process is gone
    with pytest.raises(LaserConfigError, match="stopped before it saved anything") as caught:
        run(make_config([f"resume={out}"]), out)
    command = str(caught.value).split("start it again with: ")[1]
    assert command == f"python -m laser.run laser.iterations=1 seed=3 hydra.run.dir={out}"
    overrides = [word for word in shlex.split(command)[3:] if not word.startswith("hydra.")]
    assert run(make_config(overrides, output_dir=out), out)["complete"]
