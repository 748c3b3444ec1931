"""Decisions per prompt (bandit.granularity=instance): one per prompt, each scored by its own RM."""

from __future__ import annotations

import json

from laser.run import run


def test_instance_granularity_makes_one_decision_per_prompt(make_config, tmp_path):
    out = tmp_path / "run"
    results = run(make_config(["bandit.granularity=instance", "laser.iterations=1", "data.batch_size=4",
                               "data.steps_per_iteration=3"], output_dir=out), out)
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 4 and [line["step"] for line in lines] == [s for s in range(3) for _ in range(4)]
    assert all(sum(line["categories"].values()) == 1 for line in lines)  # one prompt each
    assert sum(results["rm_selection_counts"].values()) == 12
    # Each prompt's 4 responses are scored by its own RM: 3 steps x 4 prompts x 4 samples in all.
    assert sum(results["rm_calls"].values()) == 3 * 4 * 4
