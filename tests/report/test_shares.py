"""RM shares per category in the last iteration (laser/report/shares.py): hand-computed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from laser.report.jobs import Job
from laser.report.shares import last_iteration_shares, rm_calls_by_rm, run_shares
from laser.report.writing import render_markdown


def line(iteration: int, arm, category: str) -> dict:
    return {"iteration": iteration, "arm_name": arm, "categories": {category: 8}}


def test_run_shares_count_the_last_iteration_only_and_skip_ensembles():
    selections = [line(1, "noise", "a"), line(2, "judge_a", "a"), line(2, "judge_a", "a"), line(2, "noise", "a"),
                  line(2, "judge_b", "b"), line(2, ["judge_a", "judge_b"], "b")]
    assert run_shares(selections) == {"a": {"judge_a": pytest.approx(2 / 3), "noise": pytest.approx(1 / 3)},
                                      "b": {"judge_b": 1.0}}
    assert run_shares([]) == {}


def test_method_shares_are_means_over_runs_with_the_lowest_run():
    def job(seed: int, arms: list[str]) -> Job:
        return Job(Path(f"/j{seed}"), "linucb", "arithmetic", seed, {}, [line(1, a, "a") for a in arms])

    shares = last_iteration_shares([job(0, ["judge_a"] * 4), job(1, ["judge_a", "noise", "noise", "noise"])])
    cell = shares["arithmetic"]["linucb"]["a"]
    assert cell["judge_a"] == {"mean": pytest.approx(0.625), "min": pytest.approx(0.25)}
    assert cell["noise"] == {"mean": pytest.approx(0.375), "min": 0.0}


def test_rm_calls_by_rm_are_means_over_runs_with_zero_for_an_rm_a_run_never_called():
    def job(seed: int, method: str, calls: dict[str, int]) -> Job:
        return Job(Path(f"/j{seed}{method}"), method, "arithmetic", seed, {"rm_calls": calls}, [])

    jobs = [job(0, "linucb", {"judge": 300, "served": 20}), job(1, "linucb", {"judge": 100}),
            job(0, "score_ensemble", {"judge": 320, "served": 320})]
    calls = rm_calls_by_rm(jobs)
    assert calls == {"arithmetic": {"linucb": {"judge": 200.0, "served": 10.0},
                                    "score_ensemble": {"judge": 320.0, "served": 320.0}}}
    markdown = render_markdown(Path("/sweep"), jobs, [], {}, {}, {})
    assert "| arithmetic | linucb | judge 200, served 10 |" in markdown
    assert "## RM calls by RM" not in render_markdown(Path("/sweep"), [], [], {}, {}, {})
