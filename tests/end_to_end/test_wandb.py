"""`logger=wandb` offline: each job writes its own W&B run into its run folder and finishes it, so the
jobs of a multirun sweep never merge into one W&B run; the CSV metrics are still written."""

from __future__ import annotations

from pathlib import Path

import pytest

from laser.run import run

wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode, with every file it writes outside the run folders kept under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        folder = tmp_path / "wandb-home" / name.lower()
        folder.mkdir(parents=True)
        monkeypatch.setenv(name, str(folder))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)  # a fixed id would make every job the same run
    yield
    if wandb.run is not None:  # a failed test must not leave its run open for the next one
        wandb.finish()


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def run_job(make_config, run_dir: Path) -> None:
    try:
        run(make_config(["logger=wandb", "laser.iterations=1"], output_dir=run_dir), run_dir)
    except Exception as error:
        # Only a W&B start-up failure (no service process in this sandbox) is a reason to skip;
        # anything the project does wrong still fails the test.
        if type(error).__module__.startswith("wandb") and not (run_dir / "wandb").exists():
            pytest.skip(f"W&B cannot start offline here: {type(error).__name__}: {error}")
        raise


def test_each_job_writes_and_finishes_its_own_offline_wandb_run(make_config, tmp_path, offline_wandb):
    first, second = tmp_path / "job0", tmp_path / "job1"
    run_job(make_config, first)
    assert wandb.run is None  # finished at the end of the job
    run_job(make_config, second)
    assert wandb.run is None

    runs = [offline_runs(first), offline_runs(second)]
    assert [len(found) for found in runs] == [1, 1], runs  # one W&B run per job, in its own folder
    assert runs[0][0].name != runs[1][0].name  # distinct run ids: the jobs were not merged
    for found in runs:
        assert list(found[0].glob("*.wandb")), f"no .wandb file in {found[0]}"
        # The table of sampled completions with the RM that scored them (logged at step 0).
        assert list(found[0].glob("files/media/table/samples_*.table.json"))
    for job in (first, second):
        assert (job / "csv" / "metrics.csv").exists() and (job / "results.json").exists()
