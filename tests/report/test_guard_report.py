"""The report's guard section (laser/report/guard.py): what `guard=dev_rollback` undid, per method, over seeds."""

from __future__ import annotations

from laser.report.guard import guard_section, guard_summary
from laser.report.jobs import Job


def guarded(tmp_path, method: str, seed: int, iterations: list[dict]) -> Job:
    records = [{"iteration": 0, "test/accuracy": 0.5}] + [{"iteration": i + 1, **r} for i, r in enumerate(iterations)]
    return Job(tmp_path / f"{method}{seed}", method, "arithmetic", seed, {"iterations": records}, [])


def test_undone_checks_and_fallen_categories_are_summed_per_run_and_averaged_over_seeds(tmp_path):
    one = {"guard/checks": 6.0, "guard/rolled_back": 2.0, "guard/fell/maximum": 2.0, "guard/fell/minimum": 1.0,
           "guard/penalised": 5.0}
    none = {"guard/checks": 6.0, "guard/rolled_back": 0.0, "guard/fell/maximum": 0.0, "guard/fell/minimum": 0.0,
            "guard/penalised": 0.0}
    jobs = [guarded(tmp_path, "linucb_guard", 0, [one, one]), guarded(tmp_path, "linucb_guard", 1, [one, none]),
            Job(tmp_path / "plain", "linucb", "arithmetic", 0, {"iterations": [{"iteration": 1}]}, [])]
    summary = guard_summary(jobs)
    assert list(summary["arithmetic"]) == ["linucb_guard"]  # the unguarded job has no row
    row = summary["arithmetic"]["linucb_guard"]
    assert row == {"seeds": 2, "checks": 12.0, "undone": 3.0, "penalised": 7.5, "fell": {"maximum": 3.0, "minimum": 1.5}}
    lines = guard_section(summary)
    assert "| linucb_guard | 2 | 12.0 | 3.0 | 3.0 | 1.5 | 7.5 |" in lines
    assert guard_section(guard_summary(jobs[2:])) == []  # no guarded job: no section
