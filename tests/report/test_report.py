"""`laser.report`: the sweep table against hand-computed statistics, the pseudo-regret on a hand
example, the plots, and one real tiny sweep through the CLI and the analysis notebook."""

from __future__ import annotations

import csv
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_OVERRIDES, compose_config, run_analysis_notebook
from matplotlib.image import imread
from omegaconf import OmegaConf

from laser.report.jobs import Job, load_sweep
from laser.report.regret import gold_arm_means, pseudo_regret
from laser.report.stats import t_quantile_975
from laser.report.tables import BEFORE_TRAINING, build_table, passes_by_task, start_row
from laser.report.writing import write_report

PLOTS = ["selection_share.png", "selection_share_by_category.png", "accuracy_by_iteration.png", "regret.png"]
T2 = t_quantile_975(2)  # 4.3027 (tests/report/test_stats.py checks it): the 95% interval of 3 seeds
BASE = "before preference training (no warm start)"  # the hand sweep's policy had no warm start

# Test accuracy per iteration (0 = before training) of each (method, seed): the final one is the last.
ACCURACIES = {
    ("linucb", 0): [0.3, 0.45, 0.5], ("linucb", 1): [0.4, 0.5, 0.6], ("linucb", 2): [0.5, 0.6, 0.7],
    ("random", 0): [0.5, 0.4, 0.4], ("random", 1): [0.4, 0.4, 0.4], ("random", 2): [0.5, 0.6, 0.7],
}


def decision(step: int, arm: str | list[str], category: str, gold: float | None) -> dict:
    """One selections.jsonl line (the fields `laser.step.records.selection_line` writes)."""
    return {"step": step, "iteration": 1 + step // 2, "arm": 0, "arm_name": arm, "reward_raw": -1.0,
            "reward_normalised": 0.5, "categories": {category: 4}, "propensity": None, "gold_pair_accuracy": gold}


def write_job(folder: Path, method: str, seed: int, accuracies: list[float], complete: bool = True,
              wall_seconds: float = 1.0, warm_start_steps: int = 0) -> None:
    """A results.json and selections.jsonl as a finished (or stopped) job writes them."""
    folder.mkdir(parents=True)
    iterations = [{"iteration": i, "test/accuracy": a, "test/accuracy/addition": a / 2,
                   "rm_calls": {"a": 10 * i, "b": 20 * i}} for i, a in enumerate(accuracies)]
    results = {"seed": seed, "wall_seconds": wall_seconds, "complete": complete, "method": method,
               "task": "arithmetic", "final": {k: v for k, v in iterations[-1].items() if k.startswith("test/")},
               "iterations": iterations, "rm_selection_counts": {"a": 2, "b": 2}, "rm_calls": {"a": 20, "b": 40},
               "config": {"policy": {"warm_start": {"steps": warm_start_steps}}}}
    (folder / "results.json").write_text(json.dumps(results))
    lines = [decision(0, "a", "addition", 1.0), decision(1, "b", "addition", 0.5),
             decision(2, "a", "comparison", 0.0), decision(3, "b", "comparison", 1.0)]
    (folder / "selections.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture(scope="module")
def hand_sweep(tmp_path_factory) -> Path:
    """2 methods x 3 seeds x 1 task, plus one stopped job (folder 6) that the report must skip (read only)."""
    sweep = tmp_path_factory.mktemp("hand") / "sweep"
    for number, ((method, seed), accuracies) in enumerate(ACCURACIES.items()):
        write_job(sweep / str(number), method, seed, accuracies, wall_seconds=1.0 + seed)
    write_job(sweep / "6", "linucb", 3, [0.0, 0.0], complete=False)
    return sweep


@pytest.fixture(scope="module")
def hand_report(hand_sweep: Path, tmp_path_factory) -> tuple[Path, list[Path]]:
    """The report of the hand sweep, written once (its plots cost ~0.6 s): its folder and the files written."""
    out = tmp_path_factory.mktemp("hand-report")
    return out, write_report(hand_sweep, out)


def test_table_means_stds_and_intervals_match_hand_computation(hand_sweep, caplog):
    with caplog.at_level(logging.WARNING, logger="laser.report"):
        jobs, skipped = load_sweep(hand_sweep)
    assert len(jobs) == 6 and skipped == [hand_sweep / "6"]
    assert str(hand_sweep / "6") in caplog.text and "incomplete" in caplog.text
    cells = build_table(jobs)["arithmetic"]
    assert list(cells) == [BASE, "linucb", "random"]
    linucb = cells["linucb"]["accuracy"]  # 0.5, 0.6, 0.7
    assert (linucb.mean, linucb.std, linucb.n) == (pytest.approx(0.6), pytest.approx(0.1), 3)
    half = T2 * 0.1 / math.sqrt(3)
    assert (linucb.ci_low, linucb.ci_high) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    rand = cells["random"]["accuracy"]  # 0.4, 0.4, 0.7
    assert rand.mean == pytest.approx(0.5) and rand.std == pytest.approx(math.sqrt(0.03))
    assert rand.ci_high - rand.mean == pytest.approx(T2 * math.sqrt(0.03) / math.sqrt(3))
    # Before preference training: iteration 0, averaged per seed over both methods first: 0.4, 0.4, 0.5.
    sft = cells[BASE]["accuracy"]
    assert (sft.mean, sft.std, sft.n) == (pytest.approx(1.3 / 3), pytest.approx(math.sqrt(0.01 / 3)), 3)
    assert cells["linucb"]["categories"]["addition"].mean == pytest.approx(0.3)
    assert cells["linucb"]["rm_calls_per_run"] == 60 and cells["linucb"]["wall_seconds_per_run"] == 2.0
    assert "rm_calls_per_run" not in cells[BASE]


def test_the_before_training_row_says_whether_a_warm_start_ran(tmp_path):
    assert start_row((0, None)) == BASE and start_row(None) == BEFORE_TRAINING
    assert start_row((200, None)) == "before preference training (SFT: 200 steps)"
    assert start_row((1500, 0.6)) == "before preference training (SFT to 0.6 accuracy per category, at most 1500 steps)"
    sweep = tmp_path / "sweep"  # a base policy and a warm-started one: two rows, never one average
    write_job(sweep / "0", "linucb", 0, [0.2, 0.3])
    write_job(sweep / "1", "linucb", 1, [0.6, 0.7], warm_start_steps=200)
    cells = build_table(load_sweep(sweep)[0])["arithmetic"]
    assert list(cells) == [BASE, start_row((200, None)), "linucb"]
    assert cells[BASE]["accuracy"].mean == 0.2 and cells[start_row((200, None))]["accuracy"].mean == 0.6
    (sweep / "0" / "results.json").write_text((sweep / "0" / "results.json").read_text().replace(
        '"config": {"policy": {"warm_start": {"steps": 0}}}', '"config": {}'))  # older results: unknown
    assert BEFORE_TRAINING in build_table(load_sweep(sweep)[0])["arithmetic"]


def test_the_paper_configs_row_is_not_called_sft(make_config, tmp_path):
    """`+experiment=reasoning_table` starts from the base Llama-3-8B (no warm start): its row must say so."""
    cfg = make_config(["+experiment=reasoning_table"], tiny=False)
    job = Job(tmp_path, "linucb", "gsm8k", 0, {"config": OmegaConf.to_container(cfg)}, [])
    assert job.warm_start == (0, None) and start_row(job.warm_start) == BASE


def test_each_task_states_its_passes_over_the_training_set_per_iteration(tmp_path):
    """results.json's `data.passes_per_iteration` heads the task's column and section (a range when the jobs
    differ); results written before the field existed leave the task's name alone."""
    sweep = tmp_path / "sweep"
    for number, passes in enumerate([468 * 16 / 7473, 1.0, 467 * 16 / 2061, None]):
        write_job(sweep / str(number), "linucb", number, [0.2, 0.3])
        path = sweep / str(number) / "results.json"
        results = json.loads(path.read_text())
        results["data"] = {} if passes is None else {"passes_per_iteration": passes}
        results["task"] = "gsm8k" if number < 2 else "strategyqa" if number == 2 else "mmlu"
        path.write_text(json.dumps(results))
    assert passes_by_task(load_sweep(sweep)[0]) == {  # the old fixed 467 steps gave StrategyQA 3.6 passes
        "gsm8k": (1.0, pytest.approx(1.002, abs=1e-3)), "mmlu": None, "strategyqa": (pytest.approx(3.625, abs=1e-3),) * 2}
    write_report(sweep, tmp_path / "out")
    markdown = (tmp_path / "out" / "report.md").read_text()
    header = "| method | gsm8k (1.00 passes / iteration) | mmlu | strategyqa (3.63 passes / iteration) |"
    assert header in markdown
    assert "### gsm8k (1.00 passes / iteration)" in markdown and "### mmlu\n" in markdown
    (sweep / "1" / "results.json").write_text((sweep / "1" / "results.json").read_text().replace(
        '"passes_per_iteration": 1.0', '"passes_per_iteration": 0.5'))
    write_report(sweep, tmp_path / "out")
    assert "### gsm8k (0.50-1.00 passes / iteration)" in (tmp_path / "out" / "report.md").read_text()


def test_report_files_carry_the_same_numbers(hand_sweep, hand_report):
    out, files = hand_report
    assert [f.name for f in files] == ["report.md", "report.csv", "report.json", *PLOTS]
    markdown = (out / "report.md").read_text()
    assert "| linucb | 0.600 ± 0.100 [0.352, 0.848] (n=3) |" in markdown
    assert f"| {BASE} | 0.433 ± 0.058 [0.290, 0.577] (n=3) |" in markdown
    assert "pseudo-regret estimated from the sweep's own decisions" in markdown
    assert str(hand_sweep / "6") in markdown  # the skipped job is named
    rows = {row["method"]: row for row in csv.DictReader((out / "report.csv").open())}
    assert float(rows["random"]["arithmetic/accuracy_std"]) == pytest.approx(math.sqrt(0.03))
    assert rows[BASE]["arithmetic/rm_calls_per_run"] == ""
    report = json.loads((out / "report.json").read_text())
    assert report["table"]["arithmetic"]["linucb"]["accuracy"]["ci_high"] == pytest.approx(0.6 + T2 * 0.1 / math.sqrt(3))
    assert report["skipped"] == [str(hand_sweep / "6")]


def test_every_plot_is_a_readable_image(hand_report):
    out, files = hand_report
    for name in PLOTS:
        path = out / name
        assert path in files and path.stat().st_size > 1024
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_pseudo_regret_on_a_hand_example():
    lines = [decision(0, "A", "x", 1.0), decision(1, "B", "x", 0.5), decision(2, "A", "y", 0.0),
             decision(3, "B", "y", 1.0), decision(4, "A", "x", 0.5),
             decision(5, ["A", "B"], "y", 0.0)]  # an ensemble decision: says nothing about one RM
    means = gold_arm_means(lines)
    assert means == {"x": {"A": 0.75, "B": 0.5}, "y": {"A": 0.0, "B": 1.0}}
    # Oracle: A on x (0.75), B on y (1.0). Regret per step: 0, 0.25, 1.0, 0, 0, 0 (ensemble).
    assert pseudo_regret(lines, means) == pytest.approx([0.0, 0.25, 1.25, 1.25, 1.25, 1.25])


def test_a_sweep_without_complete_jobs_is_an_error(tmp_path):
    write_job(tmp_path / "sweep" / "0", "linucb", 0, [0.1, 0.2], complete=False)
    with pytest.raises(FileNotFoundError, match="no complete job"):
        write_report(tmp_path / "sweep")


# ---- a real tiny sweep ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory, cache_dir) -> Path:
    """`python -m laser.run -m bandit=linucb,random` in miniature: jobs 0 and 1 of one sweep folder."""
    from laser.run import run

    sweep = tmp_path_factory.mktemp("real") / "sweep"
    for number, bandit in enumerate(["linucb", "random"]):
        out = sweep / str(number)
        run(compose_config([*TINY_OVERRIDES, f"bandit={bandit}"], output_dir=out, cache_dir=cache_dir), out)
    return sweep


def test_cli_reports_a_real_sweep(real_sweep, tmp_path):
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "laser.report", str(real_sweep), "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [Path(line) for line in result.stdout.split()]
    # chosen_score.png: the reward-hacking monitor's view without gold (the runs write `chosen_score`)
    assert {p.name for p in printed} == {"report.md", "report.csv", "report.json", *PLOTS, "chosen_score.png"}
    assert all(p.exists() and p.stat().st_size > 0 for p in printed)
    markdown = (out / "report.md").read_text()
    assert "| linucb |" in markdown and "| random |" in markdown
    assert "| before preference training (SFT: 200 steps) |" in markdown  # the tiny policy's default warm start
    assert "| SFT |" not in markdown


def test_notebook_runs_on_a_real_sweep(real_sweep, monkeypatch):
    notebook = run_analysis_notebook(real_sweep, monkeypatch)  # raises CellExecutionError if any cell fails
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert any("text/markdown" in o.get("data", {}) and "| linucb |" in o["data"]["text/markdown"] for o in outputs)
