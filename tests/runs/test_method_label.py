"""The results-table row of a run (`laser.runs.results.method_label`)."""

from __future__ import annotations

from types import SimpleNamespace

from laser.runs.results import method_label

SINGLE = SimpleNamespace(fixed_arm=1, arm_names=["comparison_judge", "maximum_judge"])


def test_single_rm_runs_are_named_by_their_rm_and_keep_a_suffix():
    assert method_label("single_1", SINGLE) == "single:maximum_judge"
    assert method_label("single", SINGLE) == "single:maximum_judge"
    assert method_label("single_1_guard", SINGLE) == "single:maximum_judge_guard"  # apart from the unguarded row
    assert method_label("linucb_guard", SimpleNamespace()) == "linucb_guard"
    assert method_label(None, SINGLE) == "SimpleNamespace"
