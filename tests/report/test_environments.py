"""The environments a sweep ran under (laser/report/environments.py): grouped, and a mixed sweep warned."""

from __future__ import annotations

from pathlib import Path

from laser.report.environments import UNRECORDED, environment_key, environment_lines, sweep_environments
from laser.report.jobs import Job

ENV = {"git": {"commit": "abcdef0123456789", "dirty": False, "diff_sha256": None}, "python": "3.11.7",
       "packages": {"laser": "0.1.0", "torch": "2.13.0", "transformers": "5.0"}, "platform": "Linux",
       "cpu": "CPU A", "torch_threads": 1, "cuda": None}


def job(name: str, environment: dict) -> Job:
    return Job(Path(f"/sweep/{name}"), "linucb", "arithmetic", 0, {"environment": environment}, [])


def test_jobs_of_one_environment_are_one_row_and_no_warning():
    environments = sweep_environments([job("0", ENV), job("1", dict(ENV))])
    assert list(environments.values()) == [["/sweep/0", "/sweep/1"]]
    key = next(iter(environments))
    assert key.startswith("abcdef0123 | python 3.11.7 | torch 2.13.0, transformers 5.0 | CPU A | 1 threads | no GPU")
    assert not any("Warning" in line for line in environment_lines(environments))


def test_another_cpu_a_dirty_tree_or_an_old_results_file_is_another_environment_and_warned():
    other_cpu = {**ENV, "cpu": "CPU B"}
    dirty = {**ENV, "git": {"commit": "abcdef0123456789", "dirty": True, "diff_sha256": "feedbeef" * 8}}
    environments = sweep_environments([job("0", ENV), job("1", ENV), job("2", other_cpu), job("3", dirty),
                                       job("4", {})])
    assert len(environments) == 4 and list(environments.values())[0] == ["/sweep/0", "/sweep/1"]
    assert environment_key(dirty).startswith("abcdef0123+dirty:feedbeef |") and UNRECORDED in environments
    lines = environment_lines(environments)
    assert lines[3].startswith("**Warning: this sweep ran under 4 environments.**")
    assert sum(line.startswith("- ") for line in lines) == 4
