"""`laser.report.counterfactuals`: Kendall's tau-b, the per-step agreement and the true regret against
hand-computed values, the report section and plots (only for sweeps with counterfactuals), and one real
tiny run with `laser.counterfactuals=true` through `write_report`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_analysis_notebook
from hypothesis import given
from hypothesis import strategies as st

from laser.report.counterfactuals import (
    agreement_rate,
    counterfactual_regret,
    final_regret,
    kendall_tau_b,
    regret_band,
    reward_vs_gold,
    step_agreement,
)
from laser.report.jobs import load_sweep
from laser.report.writing import write_report

CF_PLOTS = ["reward_vs_gold_agreement.png", "reward_vs_gold_paper.png", "counterfactual_regret.png"]
SECTION = "## What the bandit's reward sees (counterfactuals)"


def arm(gold: float | None, normalised: float | None = None, raw: float | None = None) -> dict:
    """One RM of a counterfactuals.jsonl line; without a reward it made no pairs (only pairs and gold)."""
    if normalised is None:
        return {"pairs": 0, "gold_pair_accuracy": gold}
    return {"pairs": 4, "gold_pair_accuracy": gold, "loss": -raw, "dpo_loss": 0.69, "nll_loss": -raw - 0.69,
            "reward_raw": raw, "reward_normalised": normalised}


def line(step: int, chosen: str | list[str], category: str, arms: dict, reward: str = "paper") -> dict:
    """One counterfactuals.jsonl line (the fields `counterfactual_line` writes)."""
    return {"step": step, "iteration": 1, "categories": {category: 4},
            "chosen": chosen if isinstance(chosen, list) else [chosen], "reward": reward, "arms": arms}


# Job 0 (linucb, seed 0). Regret per step: 0.5, 0, skipped (ensemble), 1.0 - 0.5 (B made no pairs).
JOB_0 = [
    line(0, "A", "x", {"A": arm(0.5, 0.2, -2.0), "B": arm(1.0, 0.8, -1.0), "C": arm(0.0, 0.5, -1.5)}),
    line(1, "B", "x", {"A": arm(0.5, 0.6, -1.2), "B": arm(1.0, 0.6, -1.1), "C": arm(0.25, 0.1, -3.0)}),
    line(2, ["A", "B"], "y", {"A": arm(1.0, 0.4, -1.0), "B": arm(0.0, 0.9, -0.5), "C": arm(0.0, 0.2, -2.0)}),
    line(3, "C", "y", {"A": arm(1.0, 0.7, -1.0), "B": arm(None), "C": arm(0.5, 0.3, -2.0)}),
]
# Job 1 (linucb, seed 1), resumed: step 1 was written twice, the last counts. Regret: 0, 1.0, skipped
# (the chosen RM has no gold accuracy).
JOB_1 = [
    line(0, "C", "x", {"A": arm(0.5, 0.5, -1.5), "B": arm(0.5, 0.5, -1.5), "C": arm(0.5, 0.5, -1.5)}),
    line(1, "B", "x", {"A": arm(0.9, 0.9, -9.0), "B": arm(0.9, 0.9, -9.0), "C": arm(0.9, 0.9, -9.0)}),
    line(1, "A", "x", {"A": arm(0.0, 0.1, -0.5), "B": arm(1.0, 0.9, -2.5), "C": arm(0.75, 0.3, -2.0)}),
    line(2, "A", "y", {"A": arm(None, 0.5, -1.0), "B": arm(0.5, 0.5, -1.0), "C": arm(0.0, 0.5, -1.0)}),
]
# Job 2 (random, seed 0) learns from another selector reward. Regret: 1.0 at each step.
JOB_2 = [line(s, "C", "x", {"A": arm(0.5, 0.2, 0.3), "B": arm(1.0, 0.8, 0.9), "C": arm(0.0, 0.5, 0.5)},
              reward="agreement") for s in range(2)]


def write_job(folder: Path, method: str, seed: int, counterfactuals: list[dict] | None) -> None:
    """A finished job's results.json, and its counterfactuals.jsonl when it has any."""
    folder.mkdir(parents=True)
    iterations = [{"iteration": i, "test/accuracy": 0.5} for i in range(2)]
    (folder / "results.json").write_text(json.dumps({
        "seed": seed, "complete": True, "method": method, "task": "arithmetic", "final": iterations[-1],
        "iterations": iterations, "rm_selection_counts": {"A": 1, "B": 1, "C": 1}}))
    if counterfactuals is not None:
        (folder / "counterfactuals.jsonl").write_text("".join(json.dumps(c) + "\n" for c in counterfactuals))


@pytest.fixture
def cf_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    for number, (method, seed, lines) in enumerate([("linucb", 0, JOB_0), ("linucb", 1, JOB_1), ("random", 0, JOB_2)]):
        write_job(sweep / str(number), method, seed, lines)
    return sweep


# ---- Kendall's tau-b and the per-step agreement -----------------------------------------------------


def test_kendall_tau_b_by_hand():
    assert kendall_tau_b([1, 2, 3], [10, 20, 30]) == 1.0 and kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    # Pairs of [1,2,2,3] vs [1,2,3,3]: 4 concordant, 0 discordant, one tie in each: 4 / sqrt(5 * 5).
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    # [1,1,2] vs [2,1,1]: (0,1) ties in x, (0,2) discordant, (1,2) ties in y: -1 / sqrt(2 * 2).
    assert kendall_tau_b([1, 1, 2], [2, 1, 1]) == pytest.approx(-0.5)
    # A pair tied in both counts as a tie in each: [1,1,2] vs [5,5,6] is a perfect agreement.
    assert kendall_tau_b([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0)
    assert kendall_tau_b([0.1 + 0.2, 0.3, 1.0], [1, 1, 2]) == pytest.approx(1.0)  # float noise is a tie
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None and kendall_tau_b([1], [1]) is None
    with pytest.raises(ValueError):
        kendall_tau_b([1, 2], [1, 2, 3])


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=8))
def test_kendall_tau_b_is_symmetric_bounded_and_flips_with_a_reversed_ranking(pairs):
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    tau = kendall_tau_b(x, y)
    assert tau == kendall_tau_b(y, x)
    if tau is not None:
        assert -1 - 1e-12 <= tau <= 1 + 1e-12
        assert kendall_tau_b(x, [-v for v in y]) == pytest.approx(-tau)
    if len(set(x)) > 1:
        assert kendall_tau_b(x, x) == pytest.approx(1.0)


def test_step_agreement_by_hand():
    agree = {"A": arm(1.0, 0.9, -1.0), "B": arm(0.5, 0.2, -2.0)}
    assert step_agreement(agree, "reward_normalised") == 1.0
    disagree = {"A": arm(1.0, 0.2, -1.0), "B": arm(0.5, 0.9, -2.0)}
    assert step_agreement(disagree, "reward_normalised") == 0.0 and step_agreement(disagree, "reward_raw") == 1.0
    tied_reward = {"A": arm(1.0, 0.5, -1.0), "B": arm(0.5, 0.5, -1.0), "C": arm(0.0, 0.1, -3.0)}
    assert step_agreement(tied_reward, "reward_normalised") == 0.5  # a random tie-break picks A half the time
    tied_gold = {"A": arm(0.5, 0.9, -1.0), "B": arm(0.5, 0.2, -2.0)}
    assert step_agreement(tied_gold, "reward_normalised") is None  # gold cannot tell the RMs apart
    no_pairs = {"A": arm(1.0, 0.9, -1.0), "B": arm(None)}
    assert step_agreement(no_pairs, "reward_normalised") is None
    lines = [line(i, "A", "x", arms) for i, arms in enumerate([agree, disagree, tied_reward, tied_gold])]
    assert agreement_rate(lines, "reward_normalised") == {"rate": pytest.approx(0.5), "steps": 3}
    assert agreement_rate([], "reward_raw") == {"rate": None, "steps": 0}


# ---- the hand sweep ---------------------------------------------------------------------------------


def test_reward_vs_gold_on_the_hand_sweep(cf_sweep):
    views = reward_vs_gold(load_sweep(cf_sweep)[0])
    assert list(views) == ["arithmetic"] and list(views["arithmetic"]) == ["agreement", "paper"]
    x = views["arithmetic"]["paper"]["x"]  # job 0 steps 0-1, job 1 steps 0-1 (the resumed step's last line)
    assert x["steps"] == 4
    assert x["arms"]["A"] == pytest.approx({"gold_pair_accuracy": 0.375, "reward_normalised": 0.35, "reward_raw": -1.3})
    assert x["arms"]["B"] == pytest.approx({"gold_pair_accuracy": 0.875, "reward_normalised": 0.7, "reward_raw": -1.525})
    assert x["arms"]["C"] == pytest.approx({"gold_pair_accuracy": 0.375, "reward_normalised": 0.35, "reward_raw": -2.0})
    # Normalised: B above A = C on both (A-C tied in both): tau-b 1. Raw: A > B > C against B > A = C:
    # (A,B) discordant, (A,C) tied in gold, (B,C) concordant: 0.
    assert x["kendall_tau"] == pytest.approx({"reward_normalised": 1.0, "reward_raw": 0.0})
    # Per step (normalised): 1, 1/2 (A and B tie at the top, B is gold-best), skipped (gold all tied), 1.
    assert x["agreement"]["reward_normalised"] == {"rate": pytest.approx(2.5 / 3), "steps": 3}
    assert x["agreement"]["reward_raw"] == {"rate": pytest.approx(2 / 3), "steps": 3}  # 1, 1, -, 0
    y = views["arithmetic"]["paper"]["y"]  # job 0 steps 2-3, job 1 step 2
    assert y["arms"]["A"] == pytest.approx({"gold_pair_accuracy": 1.0, "reward_normalised": 1.6 / 3, "reward_raw": -1.0})
    assert y["arms"]["B"] == pytest.approx({"gold_pair_accuracy": 0.25, "reward_normalised": 0.7, "reward_raw": -0.75})
    assert y["kendall_tau"] == pytest.approx({"reward_normalised": 1 / 3, "reward_raw": 1 / 3})
    # Only job 0's step 2 counts (a missing reward, then a missing gold accuracy); B's reward is best there.
    assert y["agreement"]["reward_normalised"] == {"rate": 0.0, "steps": 1}
    other = views["arithmetic"]["agreement"]["x"]
    # Raw B > C > A against gold B > A > C: (A,C) discordant, the other two pairs concordant: 1/3.
    assert other["steps"] == 2 and other["kendall_tau"]["reward_raw"] == pytest.approx(1 / 3)
    assert other["agreement"]["reward_raw"] == {"rate": 1.0, "steps": 2}


def test_true_regret_of_the_hand_sweep(cf_sweep):
    curves = counterfactual_regret(load_sweep(cf_sweep)[0])
    # Two selector rewards in the sweep: each curve names its reward.
    assert curves == {"arithmetic": {"linucb (paper)": [[0.5, 0.5, 0.5, 1.0], [0.0, 1.0, 1.0]],
                                     "random (agreement)": [[1.0, 2.0]]}}
    mean, std = regret_band(curves["arithmetic"]["linucb (paper)"])  # aligned up to the shorter job
    assert mean == pytest.approx([0.25, 0.75, 0.75]) and std == pytest.approx([math.sqrt(0.125)] * 3)
    final = final_regret(curves)["arithmetic"]
    assert (final["linucb (paper)"].mean, final["linucb (paper)"].std, final["linucb (paper)"].n) == (
        pytest.approx(0.75), pytest.approx(math.sqrt(0.125)), 2)
    assert final["random (agreement)"].mean == 2.0 and math.isnan(final["random (agreement)"].std)


def test_one_reward_keeps_the_method_label(tmp_path):
    write_job(tmp_path / "sweep" / "0", "linucb", 0, JOB_0)
    assert list(counterfactual_regret(load_sweep(tmp_path / "sweep")[0])["arithmetic"]) == ["linucb"]


def test_the_section_and_plots_come_with_counterfactuals_only(cf_sweep, tmp_path):
    files = write_report(cf_sweep, tmp_path / "with")
    assert [f.name for f in files if f.name in CF_PLOTS] == CF_PLOTS
    assert all(f.stat().st_size > 1024 for f in files if f.suffix == ".png")
    markdown = (tmp_path / "with" / "report.md").read_text()
    assert SECTION in markdown and "true regret, not an estimate" in markdown
    assert "### arithmetic: reward `paper`" in markdown and "| x | B | 0.875 | 0.700 | -1.525 |" in markdown
    assert "| x | 4 | 1.00 | 0.00 | 0.83 (3 steps) | 0.67 (3 steps) |" in markdown
    assert "| arithmetic | linucb (paper) | 0.75 ± 0.35 |" in markdown
    report = json.loads((tmp_path / "with" / "report.json").read_text())["counterfactuals"]
    assert report["reward_vs_gold"]["arithmetic"]["paper"]["y"]["arms"]["B"]["gold_pair_accuracy"] == 0.25
    assert report["final_regret"]["arithmetic"]["random (agreement)"] == {
        "mean": 2.0, "std": None, "ci_low": None, "ci_high": None, "n": 1}

    for number, method in enumerate(["linucb", "random"]):  # the same jobs without counterfactuals
        write_job(tmp_path / "plain" / str(number), method, 0, None)
    files = write_report(tmp_path / "plain", tmp_path / "without")
    assert not [f for f in files if f.name in CF_PLOTS or f.name.startswith("reward_vs_gold")]
    assert SECTION not in (tmp_path / "without" / "report.md").read_text()
    assert "counterfactuals" not in json.loads((tmp_path / "without" / "report.json").read_text())


# ---- a real tiny run --------------------------------------------------------------------------------


def test_a_real_run_with_counterfactuals_is_reported(make_config, tmp_path):
    from laser.run import run

    out = tmp_path / "sweep" / "0"
    run(make_config(["laser.counterfactuals=true", "laser.iterations=1", "data.steps_per_iteration=4"],
                    output_dir=out), out)
    assert len((out / "counterfactuals.jsonl").read_text().splitlines()) == 4
    files = write_report(tmp_path / "sweep", tmp_path / "report")
    assert {"reward_vs_gold_paper.png", "counterfactual_regret.png", "live_accuracy.png", "chosen_score.png"} <= {
        f.name for f in files}  # the last two: the reward-hacking monitor (laser.report.monitor)
    assert SECTION in (tmp_path / "report" / "report.md").read_text()
    report = json.loads((tmp_path / "report" / "report.json").read_text())["counterfactuals"]
    views = report["reward_vs_gold"][load_sweep(tmp_path / "sweep")[0][0].task]["paper"]
    assert sum(view["steps"] for view in views.values()) == 4
    final = next(iter(report["final_regret"].values()))
    assert list(final) == ["linucb"] and final["linucb"]["n"] == 1 and final["linucb"]["mean"] >= 0


def test_notebook_shows_the_reward_vs_gold_table(cf_sweep, monkeypatch):
    notebook = run_analysis_notebook(cf_sweep, monkeypatch)
    markdown = [o["data"]["text/markdown"] for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                if "text/markdown" in o.get("data", {})]
    # The counterfactuals cell's own table (report.md, shown above it, has the same table in its section).
    assert any(m.lstrip().startswith("### arithmetic: reward `agreement`") and "| x | B | 0.875 |" in m
               for m in markdown)
