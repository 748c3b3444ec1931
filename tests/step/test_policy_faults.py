"""A step whose policy answers with nothing, or runs every response into the length limit."""

from __future__ import annotations

import json

from laser.policy.policy import Policy, Samples
from laser.run import run


def test_empty_responses_for_a_whole_batch_make_no_pairs_and_no_crash(make_config, tmp_path, monkeypatch):
    def empty(self, enc, n, greedy=False):
        count = enc["input_ids"].shape[0] * n
        eos = self.tokenizer.eos_token_id
        return Samples([[eos] for _ in range(count)], ["" for _ in range(count)], count, 0)

    monkeypatch.setattr(Policy, "sample", empty)
    out = tmp_path / "run"
    results = run(make_config(["laser.iterations=1", "data.steps_per_iteration=3"], output_dir=out), out)
    assert results["complete"] and results["final"]["test/accuracy"] == 0.0
    # Identical (empty) responses are never paired: every step is skipped, none trains on them.
    assert results["skipped_steps"] == {"no_pairs": 3}
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert [line["skipped"] for line in lines] == ["no_pairs"] * 3


def test_responses_cut_by_the_length_limit_still_train(make_config, tmp_path):
    out = tmp_path / "run"
    results = run(make_config(["laser.iterations=1", "data.steps_per_iteration=3", "policy.max_new_tokens=1"],
                              output_dir=out), out)
    assert results["complete"]
    header, *rows = (out / "csv" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("train/truncated_responses")
    truncated = [float(r.split(",")[column]) for r in rows if r.split(",")[column]]
    assert truncated and max(truncated) > 0  # one token leaves no room for EOS: the batch hit the limit
