"""The collectives of several processes in a single one: the evaluation split undone, counts summed."""

from __future__ import annotations

import pytest

from laser.distributed.processes import interleave


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_interleave_undoes_the_evaluation_split(world):
    for count in range(10):
        items = list(range(count))
        assert interleave([items[rank::world] for rank in range(world)]) == items


def test_counts_in_results_are_summed_over_ranks(make_config, tmp_path):
    """RM calls, RM tokens and generated tokens are each rank's own; the module sums them over ranks
    (one reduce) before they reach iterations.json, results.json and the logger. Checked with a
    stand-in strategy whose reduce adds a second, identical rank."""
    import types

    import torch

    from laser.run import build

    module = build(make_config(), tmp_path)["module"]
    module.tracker.on_step(7)
    module.rm_pool._counters[module.rm_pool.names[0]].update(calls=5, tokens=11)
    two_ranks = types.SimpleNamespace(reduce=lambda tensor, reduce_op: tensor * 2, root_device=torch.device("cpu"))
    module._trainer = types.SimpleNamespace(world_size=2, strategy=two_ranks)
    assert module.refresh_global_counts() == 14
    first = module.rm_pool.names[0]
    assert module.last_generated_tokens == 14
    assert module.last_rm_calls[first] == 10 and module.last_rm_tokens[first] == 22
