"""Head-to-head win rates from a sweep's own outputs (`laser.report.head_to_head`): LASeR against each
baseline and against its own start, on the same prompts and seed, in both orders, by hand."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from laser.errors import LaserConfigError
from laser.evaluation.judges import LengthJudge
from laser.report.__main__ import main as report_main
from laser.report.head_to_head import head_to_head, matchups
from laser.report.jobs import load_sweep
from laser.report.writing import write_report
from laser.tasks.win_rate import Judge

PROMPTS = ["p0", "p1", "p2"]
START = "before preference training (no warm start)"
LENGTH_JUDGE = {"_target_": "laser.evaluation.judges.LengthJudge"}
# Final responses per (method, seed); the length judge prefers the longer response.
FINAL = {
    ("linucb", 0): ["aaaa", "aaaa", "aa"], ("linucb", 1): ["aaaa", "a", "a"],
    ("random", 0): ["aa", "aa", "aaaa"],  # linucb wins p0, p1, loses p2: 2/3
    ("random", 1): ["aa", "aa", "a"],  # linucb wins p0, loses p1, ties p2: 1.5/3 = 1/2
    ("score_ensemble", 0): ["bbbb", "bbbb", "bb"], ("score_ensemble", 1): ["bbbb", "b", "b"],  # all ties
}


class FirstPositionJudge(Judge):
    """Always prefers whatever is shown first: pure position bias."""

    name = "first-position"

    def prefer(self, prompts, responses_a, responses_b):
        return [1.0] * len(prompts)


def write_job(folder: Path, method: str, seed: int, final: list[str], prompts: list[str] = PROMPTS,
              judge: dict | None = None) -> None:
    """A finished instruction-following job: results.json and its evaluations' model_outputs (iteration 0:
    empty responses, iteration 2: `final`), rows in reverse order in the final file (matched by instruction)."""
    (folder / "model_outputs").mkdir(parents=True)
    results = {"seed": seed, "complete": True, "method": method, "task": "alpaca_eval",
               "primary_metric": "test/win_rate", "final": {"test/mean_length": 1.0},
               "iterations": [{"iteration": i, "test/mean_length": 1.0} for i in range(3)],
               "config": {"policy": {"warm_start": {"steps": 0}}, "task": {"judge": judge}}}
    (folder / "results.json").write_text(json.dumps(results))
    for iteration, outputs in ((0, [""] * len(prompts)), (2, final)):
        rows = [{"instruction": p, "output": o, "generator": method} for p, o in zip(prompts, outputs, strict=True)]
        rows = rows[::-1] if iteration else rows
        (folder / "model_outputs" / f"iteration-{iteration}.json").write_text(json.dumps(rows))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """3 methods x 2 seeds of one task, with each job's test responses."""
    for number, ((method, seed), final) in enumerate(FINAL.items()):
        write_job(tmp_path / "sweep" / str(number), method, seed, final)
    return tmp_path / "sweep"


def test_win_rates_against_each_baseline_by_hand(sweep):
    jobs, _ = load_sweep(sweep)
    result = head_to_head(jobs, LengthJudge())
    assert result["judge"] == "length" and result["both_orders"] and list(result["tasks"]) == ["alpaca_eval"]
    cells = result["tasks"]["alpaca_eval"]["linucb"]
    assert list(cells) == [START, "random", "score_ensemble"]  # LASeR rows: methods named linucb*
    random = cells["random"]
    assert random["win_rate"].mean == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert random["win_rate"].std == pytest.approx((2 / 3 - 1 / 2) / math.sqrt(2))
    assert (random["seeds"], random["prompts"], random["wins"], random["ties"], random["losses"]) == ([0, 1], 6, 3, 1, 2)
    assert cells["score_ensemble"]["win_rate"].mean == 0.5 and cells["score_ensemble"]["ties"] == 6
    assert cells[START]["win_rate"].mean == 1.0 and cells[START]["wins"] == 6  # every response beats ""


def test_a_judge_that_always_prefers_the_first_position_gives_one_half(sweep):
    jobs, _ = load_sweep(sweep)
    result = head_to_head(jobs, FirstPositionJudge())
    cells = result["tasks"]["alpaca_eval"]["linucb"]
    assert result["judge"] == "first-position"
    assert all(c["win_rate"].mean == 0.5 and c["win_rate"].std == 0.0 and c["ties"] == c["prompts"] == 6
               for c in cells.values())


def test_named_laser_rows_and_mismatched_prompts(sweep, caplog):
    write_job(sweep / "other", "random", 0, ["a", "b"], prompts=["p0", "elsewhere"])
    jobs, _ = load_sweep(sweep)
    assert {(m.laser, m.opponent) for m in matchups(jobs, ["random"])} == {
        ("random", START), ("random", "linucb"), ("random", "score_ensemble")}
    with caplog.at_level(logging.WARNING, logger="laser.report"):
        result = head_to_head(jobs, LengthJudge())
    assert "other" in caplog.text and "differ in their instructions" in caplog.text
    assert result["tasks"]["alpaca_eval"]["linucb"]["random"]["prompts"] == 6  # the odd job is left out


def test_report_names_the_judge_and_falls_back_on_the_jobs_judge(sweep, tmp_path):
    write_report(sweep, tmp_path / "given", judge=LengthJudge())
    markdown = (tmp_path / "given" / "report.md").read_text()
    assert "## Head-to-head win rates" in markdown and "Judge: `length`" in markdown
    assert "| alpaca_eval | linucb | random | 0.583 ± 0.118 |" in markdown
    payload = json.loads((tmp_path / "given" / "report.json").read_text())
    assert payload["head_to_head"]["judge"] == "length"
    assert payload["head_to_head"]["tasks"]["alpaca_eval"]["linucb"]["random"]["wins"] == 3
    # no judge given and none in the jobs' config: the report says how to get one
    write_report(sweep, tmp_path / "none")
    assert "--judge length|rm:<path>|lm:<path>" in (tmp_path / "none" / "report.md").read_text()
    # the judge the jobs evaluated with (task.judge in results.json's config)
    for number, ((method, seed), final) in enumerate(FINAL.items()):
        write_job(tmp_path / "configured" / str(number), method, seed, final, judge=LENGTH_JUDGE)
    write_report(tmp_path / "configured", tmp_path / "from_jobs")
    payload = json.loads((tmp_path / "from_jobs" / "report.json").read_text())
    assert payload["head_to_head"]["judge"] == "length"


def test_jobs_that_disagree_on_their_judge_need_one_named(tmp_path):
    write_job(tmp_path / "sweep" / "0", "linucb", 0, FINAL[("linucb", 0)], judge=LENGTH_JUDGE)
    write_job(tmp_path / "sweep" / "1", "random", 0, FINAL[("random", 0)], judge=None)
    with pytest.raises(LaserConfigError, match="different task.judge configs"):
        write_report(tmp_path / "sweep", tmp_path / "out")


def test_a_sweep_without_outputs_has_no_head_to_head(sweep, tmp_path):
    for folder in sweep.iterdir():
        for path in (folder / "model_outputs").iterdir():
            path.unlink()
    write_report(sweep, tmp_path / "out", judge=LengthJudge())
    assert "Head-to-head" not in (tmp_path / "out" / "report.md").read_text()
    assert "head_to_head" not in json.loads((tmp_path / "out" / "report.json").read_text())


def test_cli_judges_with_the_named_judge(sweep, tmp_path, capsys):
    """`python -m laser.report <sweep> --judge ...` (its entry point is run as a process in test_report.py)."""
    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out), "--judge", "length"]) == 0
    assert json.loads((out / "report.json").read_text())["head_to_head"]["judge"] == "length"
    capsys.readouterr()
    assert report_main([str(sweep), "--judge", "gpt4"]) == 2
    assert "--judge 'gpt4' is not one of" in capsys.readouterr().err
