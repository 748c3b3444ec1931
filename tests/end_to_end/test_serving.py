"""A CPU run whose pool mixes arms in three places: the category judges (in-process), an RM behind a
vLLM-shaped server (laser's own, serving rm_pool=tiny_with_classifier's untrained classifier on /classify,
as the command in docs/serving.md does) and a TRL-style reward function. The bandit learns to pick among them, the
accounting counts every arm's calls, and the report shows the shares and RM calls."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from laser.report.writing import write_report
from laser.rewards.server import RewardServer, build_pool
from laser.run import run

GOOD = {"comparison_judge", "maximum_judge", "minimum_judge", "answer_match"}  # reliable somewhere
BAD = {"noise", "served_classifier"}  # reliable nowhere


@pytest.mark.slow  # starts processes or trains for seconds: the quick suite stays under 5 minutes
def test_a_mixed_pool_of_local_served_and_function_arms_trains_and_the_bandit_learns(make_config, tmp_path,
                                                                                     cache_dir, monkeypatch):
    server = RewardServer(build_pool("tiny_with_classifier", [f"paths.cache_dir={cache_dir}"]), port=0).start()
    monkeypatch.setenv("LASER_VLLM_URL", server.url)
    out = tmp_path / "sweep" / "run"
    try:
        cfg = make_config(["rm_pool=mixed_example", "laser.iterations=3", "data.steps_per_iteration=40"],
                          output_dir=out, legacy=False)
        results = run(cfg, out)
    finally:
        server.shutdown()
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    picks = Counter(line["arm_name"] for line in lines)
    assert set(picks) == GOOD | BAD and results["complete"] and results["faults"] == {}  # every arm was tried
    per_step = cfg.data.batch_size * cfg.laser.num_samples
    assert results["rm_calls"] == {arm: picks[arm] * per_step for arm in results["rm_calls"]}
    assert server.requests == results["rm_calls"]["served_classifier"]  # chat form: one request per response
    assert results["rm_tokens"]["served_classifier"] > 0  # the server's token counts reach the accounting
    last = Counter(line["arm_name"] for line in lines if line["iteration"] == 3)
    assert sum(last[arm] for arm in BAD) <= 0.2 * sum(last.values()) < sum(last[arm] for arm in GOOD)
    assert last["served_classifier"] < picks["served_classifier"]  # tried while exploring, then dropped
    write_report(out.parent)
    report = (out.parent / "report.md").read_text()
    assert "RM calls / run" in report and f"| {sum(results['rm_calls'].values())} |" in report
    shares = report.split("RM shares in the last iteration")[1].split("## ")[0]
    assert any(arm in shares for arm in GOOD)
