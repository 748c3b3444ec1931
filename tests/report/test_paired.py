"""`laser.report.paired`: paired differences against a baseline on hand-checkable per-seed numbers (the
interval, the signs, the exact Wilcoxon p), which jobs pair, and the report's section, CSV, JSON and log
on a small fake sweep."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import pytest
from conftest import run_analysis_notebook
from test_report import write_job
from test_stats import SLEEP_CI, SLEEP_DIFFERENCES, SLEEP_DRUG_1, SLEEP_DRUG_2

from laser.errors import LaserConfigError
from laser.report.__main__ import main
from laser.report.jobs import Job, load_sweep
from laser.report.paired import paired_comparison, paired_table, setting_keys, wilcoxon_p
from laser.report.stats import summarise
from laser.report.writing import write_report

T2 = 4.302653  # t(0.975, 2) to 6 decimals


def seeds(*values: float) -> dict[int, float]:
    return dict(enumerate(values))


# ---- the statistics on per-seed numbers -----------------------------------------------------------


def test_three_higher_seeds_by_hand():
    c = paired_comparison(seeds(0.6, 0.8, 1.0), seeds(0.5, 0.6, 0.7))  # differences 0.1, 0.2, 0.3
    assert c.seeds == (0, 1, 2) and c.differences == (0.1, 0.2, 0.3)  # rounded: 0.8 - 0.6 is 0.2 exactly
    assert c.mean == pytest.approx(0.2) and (c.higher, c.ties, c.lower) == (3, 0, 0)
    half = T2 * 0.1 / math.sqrt(3)  # std of 0.1, 0.2, 0.3 is 0.1
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.2 - half, abs=1e-6), pytest.approx(0.2 + half, abs=1e-6))
    # Exact signed-rank test: all 3 signs agree, p = 2 / 2^3; no 3-seed result can do better.
    assert c.p_value == pytest.approx(0.25) and c.note == "3 nonzero differences: p cannot go below 0.25"


def test_signed_ranks_by_hand():
    # Differences +0.1, -0.2, +0.3, +0.4: ranks 1..4, W- = 2. Subsets of {1,2,3,4} with sum <= 2: {}, {1},
    # {2}, so p = 2 * 3 / 16.
    assert wilcoxon_p([0.1, -0.2, 0.3, 0.4]) == (pytest.approx(0.375), "4 nonzero differences: p cannot go below 0.125")
    # Six agreeing signs: p = 2 / 64 < 0.05, and no note.
    assert wilcoxon_p([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]) == (pytest.approx(2 / 64), "")
    # A zero difference is dropped from the test but counted as a tie.
    c = paired_comparison(seeds(0.5, 0.6, 0.8, 1.0), seeds(0.5, 0.5, 0.6, 0.7))
    assert (c.higher, c.ties, c.lower) == (3, 1, 0) and c.p_value == pytest.approx(0.25)


def test_the_sleep_data_pair_like_the_textbook():
    c = paired_comparison(seeds(*SLEEP_DRUG_2), seeds(*SLEEP_DRUG_1))
    assert c.mean == pytest.approx(1.58, abs=1e-12)
    assert (c.ci_low, c.ci_high) == (pytest.approx(SLEEP_CI[0], abs=1e-6), pytest.approx(SLEEP_CI[1], abs=1e-6))
    s = summarise(SLEEP_DIFFERENCES)  # the same interval as the one-sample summary of the differences
    assert (c.ci_low, c.ci_high) == (pytest.approx(s.ci_low, abs=1e-12), pytest.approx(s.ci_high, abs=1e-12))
    # Nine positive differences and one zero (patient 5): exact p = 2 / 2^9.
    assert (c.higher, c.ties, c.lower) == (9, 1, 0) and c.p_value == pytest.approx(2 / 2**9) and c.note == ""


def test_small_and_degenerate_cases_say_why():
    one = paired_comparison({3: 0.7}, {3: 0.5, 4: 0.6})  # seed 4 has no partner
    assert one.seeds == (3,) and one.mean == pytest.approx(0.2) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    assert one.p_value == 1.0 and one.note == "1 seed: no interval; 1 nonzero differences: p cannot go below 1"
    same = paired_comparison(seeds(0.5, 0.6), seeds(0.5, 0.6))
    assert same.p_value is None and (same.higher, same.ties, same.lower) == (0, 2, 0)
    assert (same.ci_low, same.ci_high) == (0.0, 0.0)
    assert same.note == "every seed differs by the same amount; n/a: every difference is zero"
    none = paired_comparison({0: 0.5}, {1: 0.5})
    assert none.seeds == () and none.p_value is None and none.note == "no seed in common"


# ---- which jobs pair ------------------------------------------------------------------------------


def job(method: str, seed: int, accuracy: float, noise_arms: int | None = None) -> Job:
    """A job in memory, with a saved config as runs write it: a method-set key, a seed-derived key, the
    run's own folder, and optionally a swept setting."""
    config = {"seed": seed, "method_name": method, "bandit": {"_target_": f"laser.{method}"},
              "data": {"seed": seed}, "paths": {"output_dir": f"/runs/{method}/{seed}/{noise_arms}"},
              "trainer": {"default_root_dir": f"/runs/{method}/{seed}/{noise_arms}"}}
    if noise_arms is not None:
        config["rm_pool"] = {"noise_arms": noise_arms}
    results = {"final": {"test/accuracy": accuracy}, "config": config}
    return Job(Path("/runs"), method, "arithmetic", seed, results, [])


def test_jobs_pair_only_under_the_same_settings():
    jobs = [job(m, s, acc + 0.1 * s + (0.2 if m == "linucb" else 0.0) + 0.01 * arms, arms)
            for m in ("linucb", "score_ensemble") for s in (0, 1) for arms, acc in ((2, 0.3), (3, 0.1))]
    assert setting_keys(jobs) == ["rm_pool.noise_arms"]  # not the seed, the folders or the bandit
    table = paired_table(jobs)
    assert table["baseline"] == "score_ensemble" and table["unpaired"] == []
    groups = table["tasks"]["arithmetic"]
    assert list(groups) == ["rm_pool.noise_arms=2", "rm_pool.noise_arms=3"]
    for label in groups:  # paired within a setting, the difference is exactly the 0.2 the method adds
        assert groups[label]["linucb"].differences == (0.2, 0.2)
    # One setting value only: nothing splits, the label is empty.
    plain = [job(m, s, 0.5) for m in ("linucb", "random") for s in (0, 1)]
    assert setting_keys(plain) == [] and list(paired_table(plain, "random")["tasks"]["arithmetic"]) == [""]


def test_the_baseline_must_be_a_method_of_the_sweep():
    jobs = [job("linucb", 0, 0.5), job("random", 0, 0.4)]
    assert paired_table(jobs) is None  # the default score ensemble did not run: nothing to pair
    with pytest.raises(LaserConfigError, match=r"baseline 'nope' is not a method of this sweep; valid: linucb, random"):
        paired_table(jobs, "nope")
    # LinUCB ran with 2 and 3 noise arms, random with 2 only: the 3-arm LinUCB has no partner.
    partial = paired_table([job("linucb", 0, 0.5, 2), job("linucb", 0, 0.6, 3), job("random", 0, 0.4, 2)], "random")
    assert partial["tasks"]["arithmetic"]["rm_pool.noise_arms=2"]["linucb"].differences == (0.1,)
    assert partial["unpaired"] == [("arithmetic", "rm_pool.noise_arms=3")]


# ---- the report -----------------------------------------------------------------------------------

FINAL = {"score_ensemble": [0.45, 0.5, 0.7], "linucb": [0.5, 0.6, 0.7], "random": [0.4, 0.4, 0.7]}


@pytest.fixture
def sweep_with_ensemble(tmp_path: Path) -> Path:
    """3 methods x 3 seeds: LinUCB is 0.05, 0.1, 0 above the ensemble, random as far below."""
    sweep = tmp_path / "sweep"
    for number, (method, seed) in enumerate((m, s) for m in FINAL for s in range(3)):
        write_job(sweep / str(number), method, seed, [0.3, FINAL[method][seed]])
    return sweep


def test_the_report_writes_the_paired_table(sweep_with_ensemble, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="laser.report"):
        files = write_report(sweep_with_ensemble, tmp_path / "out")
    assert tmp_path / "out" / "report_paired.csv" in files
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Paired differences against `score_ensemble`" in markdown
    half = T2 * 0.05 / math.sqrt(3)  # differences 0.05, 0.1, 0: mean 0.05, std 0.05
    assert (f"| arithmetic | linucb | 3 | +0.050 | [{-half + 0.05:+.3f}, {half + 0.05:+.3f}] | 2 / 1 / 0 | 0.5 | "
            "0: +0.050, 1: +0.100, 2: +0.000 | 2 nonzero differences: p cannot go below 0.5 |") in markdown
    assert "| arithmetic | random | 3 | -0.050 |" in markdown
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "out" / "report_paired.csv").open())}
    assert list(rows) == ["linucb", "random"] and rows["linucb"]["baseline"] == "score_ensemble"
    assert float(rows["linucb"]["ci_high"]) == pytest.approx(0.05 + half, abs=1e-6)
    assert (rows["random"]["higher"], rows["random"]["ties"], rows["random"]["lower"]) == ("0", "1", "2")
    paired = json.loads((tmp_path / "out" / "report.json").read_text())["paired"]
    assert paired["tasks"]["arithmetic"][""]["linucb"]["differences"] == [0.05, 0.1, 0.0]
    assert "paired vs score_ensemble: arithmetic linucb: mean +0.050" in caplog.text

    vs_random = paired_table(load_sweep(sweep_with_ensemble)[0], "random")["tasks"]["arithmetic"][""]
    assert list(vs_random) == ["linucb", "score_ensemble"] and vs_random["linucb"].differences == (0.1, 0.2, 0.0)


def test_the_cli_names_the_valid_baselines(sweep_with_ensemble, tmp_path, capsys):
    assert main([str(sweep_with_ensemble), "--out", str(tmp_path / "out"), "--baseline", "oracle"]) == 2
    assert capsys.readouterr().err.strip() == ("laser.report: error: baseline 'oracle' is not a method of this "
                                               "sweep; valid: linucb, random, score_ensemble")
    assert not (tmp_path / "out").exists()  # stopped before writing anything


def test_a_sweep_without_the_default_baseline_says_how_to_choose_one(tmp_path):
    for number, method in enumerate(["linucb", "random"]):
        write_job(tmp_path / "sweep" / str(number), method, 0, [0.3, 0.5])
    files = write_report(tmp_path / "sweep", tmp_path / "out")
    assert "report_paired.csv" not in {f.name for f in files}
    assert "the default `score_ensemble` is not in this sweep; choose one with" in (tmp_path / "out" / "report.md").read_text()


def test_the_notebook_shows_the_paired_table(sweep_with_ensemble, monkeypatch):
    monkeypatch.delenv("LASER_BASELINE", raising=False)  # the default: the score ensemble
    notebook = run_analysis_notebook(sweep_with_ensemble, monkeypatch)
    markdown = [o["data"]["text/markdown"] for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                if "text/markdown" in o.get("data", {})]
    # The paired cell's own output (report.md, shown above it, carries the same section).
    own = [m for m in markdown if m.lstrip().startswith("## Paired differences against `score_ensemble`")]
    assert len(own) == 1 and "| arithmetic | linucb | 3 | +0.050 |" in own[0] and "| arithmetic | random | 3 | -0.050 |" in own[0]
