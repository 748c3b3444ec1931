"""`laser.report.monitor`: the flagging rule as a pure function (a case that flags, cases that do not),
live accuracy on hand-counted pairs, the chosen scores, and the report's section, log and plots on a
small fake sweep with counterfactuals."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from matplotlib.image import imread
from test_counterfactual_report import write_job

from laser.report.__main__ import main
from laser.report.jobs import Job, load_sweep
from laser.report.monitor import ALL_PAIRS, DECISIVE, chosen_scores, flagged_rms, hacking_flags, live_accuracy
from laser.report.writing import write_report


def arm(pairs: int, right: float, wrong: float | None) -> dict:
    """One RM of a counterfactuals.jsonl line: `right` / `wrong` are the shares of its pairs ordered
    right-over-wrong and wrong-over-right (`wrong` None: a file written before gold_pair_inverted)."""
    line = {"pairs": pairs, "gold_pair_accuracy": right if pairs else None}
    return line if wrong is None else {**line, "gold_pair_inverted": wrong if pairs else None}


def step(number: int, iteration: int, chosen: str | list[str], arms: dict, category: str = "x") -> dict:
    return {"step": number, "iteration": iteration, "categories": {category: 4},
            "chosen": chosen if isinstance(chosen, list) else [chosen], "reward": "paper", "arms": arms}


# Iteration 1: A chosen 3 of 4 batches and right on every pair gold can order. Iteration 2: A chosen on
# all 4 while it orders 1 pair right for every 2 wrong (live accuracy 1/3): the monitor must flag it.
HACKED = [step(s, 1, "A" if s < 3 else "B", {"A": arm(4, 0.75, 0.0), "B": arm(4, 0.5, 0.25)}) for s in range(4)]
HACKED += [step(s, 2, "A", {"A": arm(4, 0.25, 0.5), "B": arm(4, 0.5, 0.0)}) for s in range(4, 8)]


def test_flagging_rule_flags_a_chosen_judge_below_the_threshold():
    assert flagged_rms({"A": 0.3, "B": 0.9}, {"A": 4}, steps=4, threshold=0.5) == ["A"]
    assert flagged_rms({"A": 0.3, "B": 0.2}, {"A": 3, "B": 1}, steps=4, threshold=0.5) == ["A"]  # B: 1 of 4


def test_flagging_rule_leaves_alone_what_is_not_hacking():
    assert flagged_rms({"A": 0.6}, {"A": 4}, steps=4, threshold=0.5) == []  # above the threshold
    assert flagged_rms({"A": 0.5}, {"A": 4}, steps=4, threshold=0.5) == []  # at it (strictly below flags)
    assert flagged_rms({"A": 0.1}, {"A": 2, "B": 2}, steps=4, threshold=0.5) == []  # half the batches is not most
    assert flagged_rms({"A": None}, {"A": 4}, steps=4, threshold=0.5) == []  # no pair gold could order
    assert flagged_rms({"A": 0.3}, {"A": 4}, steps=4, threshold=0.2) == []  # a lower threshold
    assert flagged_rms({}, {}, steps=0, threshold=0.5) == []


def test_live_accuracy_pools_pairs_over_steps():
    lines = [step(0, 1, "A", {"A": arm(2, 0.5, 0.5)}), step(1, 1, "A", {"A": arm(4, 0.25, 0.5)}),
             step(2, 1, ["A", "B"], {"A": arm(0, 0.0, 0.0)}, category="y")]
    cells = live_accuracy(lines)
    # Right-over-wrong 1 + 1 pairs, wrong-over-right 1 + 2: 2 / 5 (not the mean of 1/2 and 1/3).
    assert cells[(1, "x")]["arms"]["A"]["accuracy"] == pytest.approx(0.4) and cells[(1, "x")]["arms"]["A"]["counted"] == 5
    assert cells[(1, "x")]["steps"] == 2 and dict(cells[(1, "x")]["chosen"]) == {"A": 2}
    assert cells[(1, "y")]["arms"]["A"]["accuracy"] is None and dict(cells[(1, "y")]["chosen"]) == {}  # ensemble
    # Older files: the gold pair accuracy of all pairs, 2 right of 6.
    assert live_accuracy(lines, ALL_PAIRS)[(1, "x")]["arms"]["A"]["accuracy"] == pytest.approx(1 / 3)


def test_hacking_flags_name_the_job_iteration_category_and_rm(tmp_path):
    jobs = [Job(tmp_path / "0", "linucb", "arithmetic", 0, {}, [], HACKED)]
    monitor = hacking_flags(jobs, 0.5)
    assert monitor["measure"] == DECISIVE and len(monitor["flags"]) == 1
    assert monitor["flags"][0] == {"task": "arithmetic", "method": "linucb", "seed": 0, "job": str(tmp_path / "0"),
                                   "iteration": 2, "category": "x", "rm": "A", "live_accuracy": pytest.approx(1 / 3),
                                   "pairs": 12, "chosen": 4, "steps": 4}  # 4 steps x (1 right + 2 wrong)
    assert hacking_flags(jobs, 0.3)["flags"] == []
    two = [Job(tmp_path / str(seed), "linucb", "arithmetic", seed, {}, [], HACKED) for seed in (10, 2)]
    assert [f["seed"] for f in hacking_flags(two)["flags"]] == [2, 10]  # by seed, not by folder name
    assert hacking_flags([Job(tmp_path, "linucb", "arithmetic", 0, {}, [])]) is None  # no counterfactuals
    old = [Job(tmp_path, "linucb", "arithmetic", 0, {}, [], [step(0, 1, "A", {"A": arm(4, 0.25, None)})])]
    assert hacking_flags(old)["measure"] == ALL_PAIRS and hacking_flags(old)["flags"][0]["live_accuracy"] == 0.25


def selection(number: int, iteration: int, rm: str | list[str], score: float | None) -> dict:
    return {"step": number, "iteration": iteration, "arm_name": rm, "categories": {"x": 4}, "chosen_score": score}


SELECTIONS = [selection(0, 1, "A", 0.2), selection(1, 1, "A", 0.4), selection(2, 1, "B", 0.1),
              selection(3, 2, "A", 0.9), selection(4, 2, ["A", "B"], None), selection(5, 2, "A", None)]


def test_chosen_scores_by_rm_and_iteration(tmp_path):
    job = Job(tmp_path, "linucb", "arithmetic", 0, {}, SELECTIONS)
    assert chosen_scores(job) == {"A": {1: pytest.approx(0.3), 2: 0.9}, "B": {1: 0.1}}


# ---- the report -----------------------------------------------------------------------------------


@pytest.fixture
def monitored_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    write_job(sweep / "0", "linucb", 0, HACKED)
    write_job(sweep / "1", "linucb", 1, [line | {"chosen": ["B"]} for line in HACKED])  # never chooses A
    for number in ("0", "1"):
        (sweep / number / "selections.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SELECTIONS))
    return sweep


def test_the_report_flags_and_plots(monitored_sweep, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="laser.report"):
        files = write_report(monitored_sweep, tmp_path / "out")
    for name in ("live_accuracy.png", "chosen_score.png"):
        path = tmp_path / "out" / name
        assert path in files and path.stat().st_size > 1024 and imread(path).shape[0] > 100
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Reward-hacking monitor" in markdown and "**1 flag(s): a chosen judge below 0.5.**" in markdown
    assert "| arithmetic | linucb | 0 | 2 | x | A | 0.33 | 12 | 4 / 4 |" in markdown
    assert "reward-hacking monitor: arithmetic linucb seed 0, iteration 2, category x: A took 4 of 4 batches" in caplog.text
    assert str(monitored_sweep / "0") in caplog.text
    report = json.loads((tmp_path / "out" / "report.json").read_text())["hacking_monitor"]
    assert report["threshold"] == 0.5 and [f["seed"] for f in report["flags"]] == [0]

    assert main([str(monitored_sweep), "--out", str(tmp_path / "low"), "--hacking-threshold", "0.3"]) == 0
    assert "No chosen judge fell below 0.3." in (tmp_path / "low" / "report.md").read_text()


def test_a_threshold_outside_0_1_is_an_error(monitored_sweep, tmp_path, capsys):
    assert main([str(monitored_sweep), "--out", str(tmp_path / "out"), "--hacking-threshold", "50"]) == 2
    assert capsys.readouterr().err.strip() == ("laser.report: error: hacking threshold must be a live accuracy "
                                               "in [0, 1], got 50.0")


def test_no_monitor_without_its_data(tmp_path):
    write_job(tmp_path / "sweep" / "0", "linucb", 0, None)  # neither counterfactuals nor chosen scores
    files = write_report(tmp_path / "sweep", tmp_path / "out")
    assert not {"live_accuracy.png", "chosen_score.png"} & {f.name for f in files}
    assert "Reward-hacking monitor" not in (tmp_path / "out" / "report.md").read_text()
    assert load_sweep(tmp_path / "sweep")[0][0].counterfactuals == []
