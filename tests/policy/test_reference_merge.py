"""The reference refresh (laser/policy/reference.py): in bfloat16 the policy after a refresh, and the
reference, are exactly the policy before it (the adapter is stacked into a frozen history, not merged
into bf16 weights that round it away); float32 merges are unchanged; replay is bitwise; a sharded
policy stacks the same bits."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import word_level_llamas

from laser.policy.policy import Policy
from laser.policy.reference import ADAPTER, HISTORY, merge

WORDS = "what is two plus three four ? the answer five six seven yes no user assistant : maybe"
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
LR = 5e-6  # the paper's lr, on weights of Llama's scale (initializer_range 0.02)
STEPS = 3  # AdamW steps per iteration
# Log-probs (summed over a sequence, in nats) before and after a refresh may differ by float32 rounding
# inside the LoRA path alone, which the bf16 layer outputs almost never see: measured 0 (bitwise equal).
# The bf16 merge this replaces moved them by up to 9e-3 .. 1.2e-2, as much as an iteration's whole update.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """Wide enough (256) that a small update moves log-probs well above bf16 noise."""
    paths = word_level_llamas(tmp_path_factory, WORDS, {"policy": ("causal", 0)}, hidden_size=256,
                              intermediate_size=512, initializer_range=0.02)
    return str(paths["policy"])


@pytest.fixture(scope="module")
def batch():
    """16 random prompts (BOS + 4 words) with an 8-word response each."""
    g = torch.Generator().manual_seed(0)
    prompts = [[1] + torch.randint(3, 20, (4,), generator=g).tolist() for _ in range(16)]
    responses = [torch.randint(3, 20, (8,), generator=g).tolist() for _ in range(16)]
    return prompts, responses


def train(policy: Policy, optimiser: torch.optim.Optimizer, prompts, responses) -> None:
    """STEPS AdamW steps raising the batch's log-probs."""
    for _ in range(STEPS):
        optimiser.zero_grad()
        (-policy.response_logps(prompts, responses).sum()).backward()
        optimiser.step()


def logps(policy: Policy, prompts, responses) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's and the reference's log-probs of the batch."""
    with torch.no_grad():
        return policy.response_logps(prompts, responses), policy.response_logps(prompts, responses, reference=True)


def trained_bf16_policy(model_path: str, prompts, responses, refreshes: int) -> Policy:
    torch.manual_seed(0)
    policy = Policy(model_path, lora=LORA, dtype="bfloat16")
    optimiser = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    for _ in range(refreshes):
        train(policy, optimiser, prompts, responses)
        policy.refresh_reference()
        optimiser.state.clear()
    return policy


def test_bf16_policy_and_reference_after_a_refresh_are_the_policy_before_it(model_path, batch):
    """Two iterations at lr 5e-6: right after each refresh the policy's log-probs, and the reference's,
    equal the policy's right before it (TOLERANCE); the reference stays there while the next iteration
    trains; and the iteration's update, which the test would miss, is over 100x the tolerance."""
    prompts, responses = batch
    torch.manual_seed(0)
    policy = Policy(model_path, lora=LORA, dtype="bfloat16")
    optimiser = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    for _ in range(2):
        train(policy, optimiser, prompts, responses)
        before, old_reference = logps(policy, prompts, responses)
        assert (before - old_reference).abs().max() > 100 * TOLERANCE  # the update is there to lose
        policy.refresh_reference()
        optimiser.state.clear()
        after, reference = logps(policy, prompts, responses)
        assert (after - before).abs().max() <= TOLERANCE
        assert (reference - before).abs().max() <= TOLERANCE
        train(policy, optimiser, prompts, responses)  # the next iteration moves the policy, not the reference
        moved, still = logps(policy, prompts, responses)
        assert (still - reference).abs().max() <= TOLERANCE and (moved - after).abs().max() > 100 * TOLERANCE


def test_bf16_history_is_frozen_outside_the_optimiser_and_state_dict(model_path, batch):
    """The history is buffers: no parameter, no gradient, not saved; a reference pass leaves the live
    adapter on and trainable afterwards. Base weights never change in bf16 (nothing is merged)."""
    prompts, responses = batch
    torch.manual_seed(0)
    original = {n: p.clone() for n, p in Policy(model_path, lora=LORA, dtype="bfloat16").model.named_parameters()
                if not p.requires_grad}
    policy = trained_bf16_policy(model_path, prompts, responses, refreshes=2)
    trainable = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all(f".{ADAPTER}." in n for n in trainable)
    assert not any(HISTORY in n for n, _ in policy.model.named_parameters())
    assert not any(HISTORY in k for k in policy.model.state_dict())
    for _, layer in policy.lora_layers():
        assert layer.lora_A[HISTORY].weight.shape == (2 * LORA["r"], layer.in_features)
        assert layer.active_adapters == [HISTORY, ADAPTER]
    policy.response_logps(prompts, responses, reference=True)
    assert {n for n, p in policy.model.named_parameters() if p.requires_grad} == trainable
    frozen = {n: p for n, p in policy.model.named_parameters() if not p.requires_grad}
    assert all(torch.equal(frozen[n], original[n]) for n in original)


def test_float32_refresh_is_the_plain_merge(model_path):
    """float32 keeps the merge (exact to float32 rounding, and the default run's numbers unchanged)."""
    torch.manual_seed(0)
    policy = Policy(model_path, lora=LORA)
    name, layer = policy.lora_layers()[0]
    with torch.no_grad():
        layer.lora_B[ADAPTER].weight.normal_(0.0, 1e-3)
        expected = layer.get_base_layer().weight + layer.get_delta_weight(ADAPTER)
    merge(layer)
    assert torch.equal(layer.get_base_layer().weight, expected)
    policy.refresh_reference()
    assert not any(HISTORY in layer.lora_A for _, layer in policy.lora_layers())


def test_bf16_replay_rebuilds_the_same_bits(model_path, batch):
    """A resume replays the merge history: the same history factors and log-probs, bit for bit."""
    prompts, responses = batch
    policy = trained_bf16_policy(model_path, prompts, responses, refreshes=2)
    torch.manual_seed(1)  # another LoRA A init: the replay must override it
    resumed = Policy(model_path, lora=LORA, dtype="bfloat16")
    resumed.replay_merges(policy.merged_adapters)
    resumed.load_adapter_state_dict(policy.adapter_state_dict())
    for (name, layer), (_, again) in zip(policy.lora_layers(), resumed.lora_layers(), strict=True):
        for factors in ("lora_A", "lora_B"):
            assert torch.equal(getattr(again, factors)[HISTORY].weight, getattr(layer, factors)[HISTORY].weight), name
    for ours, theirs in zip(logps(policy, prompts, responses), logps(resumed, prompts, responses), strict=True):
        assert torch.equal(ours, theirs)


def refresh_sharded_and_plain(rank: int, world_size: int, init_file: str, model_path: str, batch) -> None:
    """On each of 2 gloo ranks: a bf16 policy with its decoder layers sharded (trainer=fsdp) and a plain
    copy, the same adapter in both; after a refresh the sharded history is the plain one (whole, on
    every rank) and the sharded policy's log-probs are unchanged by the refresh."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from laser.distributed.sharding import shard_policy

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        prompts, responses = batch
        torch.manual_seed(0)
        plain, sharded = Policy(model_path, lora=LORA, dtype="bfloat16"), Policy(model_path, lora=LORA, dtype="bfloat16")
        with torch.no_grad():
            for _, layer in plain.lora_layers():
                layer.lora_B[ADAPTER].weight.normal_(0.0, 1e-3)
            sharded.load_adapter_state_dict(plain.adapter_state_dict())
        shard_policy(sharded.model, init_device_mesh("cpu", (world_size,)))
        before, _ = logps(sharded, prompts, responses)
        plain.refresh_reference()
        sharded.refresh_reference()
        after, reference = logps(sharded, prompts, responses)
        assert torch.equal(after, before) and torch.equal(reference, before)
        for (_, layer), (_, ours) in zip(plain.lora_layers(), sharded.lora_layers(), strict=True):
            assert torch.equal(ours.lora_A[HISTORY].weight, layer.lora_A[HISTORY].weight)
            assert torch.equal(ours.lora_B[HISTORY].weight, layer.lora_B[HISTORY].weight)
    finally:
        dist.destroy_process_group()
    # Skip the interpreter's teardown: after a DTensor collective on gloo, torch 2.13 aborts ~1 exit in 6
    # ("terminate called without an active exception") once all the work is done, with or without a
    # barrier or destroy_process_group; reproduced with torch alone. Only a clean pass gets here.
    os._exit(0)


@pytest.mark.slow  # two processes, each importing torch and laser and building two policies
def test_sharded_refresh_stacks_the_plain_bits(tmp_path, model_path, batch):
    torch.multiprocessing.spawn(refresh_sharded_and_plain, args=(2, str(tmp_path / "init"), model_path, batch),
                                nprocs=2)
