"""The reference refresh in bfloat16 (laser/policy/reference.py): small updates accumulate in the merged
weights instead of rounding away, float32 merges are unchanged, replay is bitwise, sharded folds
equal plain ones."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import word_level_llamas

from laser.policy.policy import Policy
from laser.policy.reference import ADAPTER, fold, lora_delta

WORDS = "what is two plus three four ? the answer five six seven yes no user assistant : maybe"
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
STEP = 1e-3  # each iteration's delta: 0.1% of the weight's RMS, lr 5e-6 on an 8B model
REFRESHES = 3


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """Wide enough (256) that a small coherent update moves log-probs well above bf16 noise."""
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


def small_step(policy: Policy, prompts, responses) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One gradient step on B towards higher log-probs (A's gradient is zero while B is), sized so each
    layer's delta has RMS = STEP x its weight's RMS. Returns each layer's (A, B)."""
    policy.model.zero_grad()
    (-policy.response_logps(prompts, responses).sum()).backward()
    factors = {}
    with torch.no_grad():
        for name, layer in policy.lora_layers():
            lora_a, lora_b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            lora_b.copy_(-lora_b.grad)
            weight_rms = layer.get_base_layer().weight.float().pow(2).mean().sqrt()
            lora_b.mul_(STEP * weight_rms / lora_delta(layer).pow(2).mean().sqrt())
            factors[name] = (lora_a.clone(), lora_b.clone())
    return factors


def unmerged(model_path: str, steps: list[dict], dtype: str) -> Policy:
    """The policy without any merge: the original weights plus every step's adapter, stacked side by
    side into one LoRA of rank r x steps (same scale), applied in the forward."""
    stacked = dict(LORA, r=LORA["r"] * len(steps), lora_alpha=LORA["lora_alpha"] * len(steps))
    policy = Policy(model_path, lora=stacked, dtype=dtype)
    with torch.no_grad():
        for name, layer in policy.lora_layers():
            layer.lora_A[ADAPTER].weight.copy_(torch.cat([step[name][0] for step in steps], dim=0))
            layer.lora_B[ADAPTER].weight.copy_(torch.cat([step[name][1] for step in steps], dim=1))
    return policy


def unmerged_logps(model_path: str, steps: list[dict], prompts, responses) -> tuple[torch.Tensor, torch.Tensor]:
    """The unmerged (live) policy's log-probs in bf16, and the exact ones: the very same weights (bf16
    base, fp32 adapter) evaluated in fp32."""
    live = unmerged(model_path, steps, "bfloat16")
    exact = unmerged(model_path, steps, "float32")
    with torch.no_grad():
        for key, value in exact.model.state_dict().items():
            value.copy_(live.model.state_dict()[key])
    return (live.response_logps(prompts, responses).detach(), exact.response_logps(prompts, responses).detach())


def rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def test_fold_accumulates_quarter_ulp_deltas_that_plain_bf16_addition_drops():
    """bf16 has an ulp of 2^-7 at 1.0: adding 2^-9 (a quarter ulp) rounds back to 1.0 every time.
    Folded with a remainder, four of them make one ulp: 1 + 2^-9 -> 1 (r = 2^-9); 1 + 2^-8 is a tie
    -> 1, the even one (r = 2^-8); 1 + 3 * 2^-9 -> 1 + 2^-7 (r = -2^-9); then 1 + 2^-7 exactly (r = 0)."""
    delta = torch.tensor([2.0 ** -9, -(2.0 ** -9)])
    plain = torch.tensor([1.0, -1.0], dtype=torch.bfloat16)
    weight, remainder = plain.clone(), None
    expected = [(1.0, 2.0 ** -9), (1.0, 2.0 ** -8), (1.0 + 2.0 ** -7, -(2.0 ** -9)), (1.0 + 2.0 ** -7, 0.0)]
    for value, rest in expected:
        plain += delta.to(torch.bfloat16)
        remainder = fold(weight, delta, remainder)
        assert weight.tolist() == [value, -value] and remainder.tolist() == [rest, -rest]
        assert remainder.dtype == torch.float32
    assert plain.tolist() == [1.0, -1.0]


def test_float32_fold_is_the_plain_addition():
    weight, delta = torch.randn(8, 8), torch.randn(8, 8) * 1e-4
    expected = weight + delta
    assert fold(weight, delta, None) is None
    assert torch.equal(weight, expected)


def test_bf16_reference_after_three_small_refreshes_is_the_unmerged_policy(model_path, batch):
    """Three iterations, each one small gradient step then a refresh. The merged weights must be the
    correctly rounded bf16 of original + every delta (fp32 sum); the reference's log-probs must match
    the unmerged policy's (original bf16 weights + all adapters in the forward) within bf16 precision.

    Tolerance: the merged reference rounds the live policy's weights to bf16, so it may be as far from
    the live policy as the live bf16 forward is from the exact (fp32) evaluation of its own weights, in
    the other direction: twice that error (per sequence, RMS over the batch). And the learning, the
    batch's summed log-prob gain over the original model, is kept to within 10%. Measured: RMS 0.0066
    against 2 x 0.0056, 1.5% of the gain; the plain bf16 `+=` merge: RMS 0.021, 35% of the gain lost
    (and 40% of the weights off the correctly rounded sum, 79% not moved at all)."""
    prompts, responses = batch
    torch.manual_seed(0)
    policy = Policy(model_path, lora=LORA, dtype="bfloat16")
    original = {name: layer.get_base_layer().weight.detach().clone() for name, layer in policy.lora_layers()}
    exact_sums = {name: weight.float() for name, weight in original.items()}
    before = policy.response_logps(prompts, responses, reference=True)
    steps = []
    for _ in range(REFRESHES):
        steps.append(small_step(policy, prompts, responses))
        for name, layer in policy.lora_layers():
            exact_sums[name] = exact_sums[name] + lora_delta(layer).detach()
        policy.refresh_reference()
    for name, layer in policy.lora_layers():
        assert torch.equal(layer.get_base_layer().weight, exact_sums[name].to(torch.bfloat16)), name

    reference = policy.response_logps(prompts, responses, reference=True)
    live, exact = unmerged_logps(model_path, steps, prompts, responses)
    assert rms(reference - live) <= 2 * rms(live - exact)
    gain = (live - before).sum().item()
    assert gain > 0.5  # the steps did move the log-probs, far above bf16 noise
    assert abs((reference - live).sum().item()) <= 0.1 * gain


def test_bf16_replay_rebuilds_the_same_bits(model_path, batch):
    """A resume replays the merge history: the same weights and remainders, bit for bit."""
    prompts, responses = batch
    torch.manual_seed(0)
    policy = Policy(model_path, lora=LORA, dtype="bfloat16")
    for _ in range(2):
        small_step(policy, prompts, responses)
        policy.refresh_reference()
    torch.manual_seed(1)
    resumed = Policy(model_path, lora=LORA, dtype="bfloat16")
    resumed.replay_merges(policy.merged_adapters)
    for (name, layer), (_, again) in zip(policy.lora_layers(), resumed.lora_layers(), strict=True):
        assert torch.equal(again.get_base_layer().weight, layer.get_base_layer().weight), name
        assert torch.equal(resumed.merge_remainders[name], policy.merge_remainders[name]), name
    assert torch.equal(resumed.response_logps(prompts, responses, reference=True),
                       policy.response_logps(prompts, responses, reference=True))


def fold_sharded_and_plain(rank: int, world_size: int, init_file: str) -> None:
    """On each of 2 gloo ranks: fold three deltas into a weight sharded by rows and into a plain copy;
    the gathered results must be the same bits, and the remainder sharded like the weight."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    from laser.distributed.sharding import shard_like

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        g = torch.Generator().manual_seed(0)
        for dtype in (torch.bfloat16, torch.float32):
            plain = torch.randn(6, 4, generator=g).to(dtype)
            sharded = torch.nn.Parameter(distribute_tensor(plain.clone(), mesh, [Shard(0)]), requires_grad=False)
            plain_rest = sharded_rest = None
            for _ in range(REFRESHES):
                delta = torch.randn(6, 4, generator=g) * 1e-3
                plain_rest = fold(plain, delta, plain_rest)
                sharded_rest = fold(sharded, shard_like(sharded, delta), sharded_rest)
            assert torch.equal(sharded.full_tensor(), plain)
            if dtype == torch.float32:
                assert plain_rest is None and sharded_rest is None
            else:
                assert isinstance(sharded_rest, DTensor) and sharded_rest.to_local().shape == (3, 4)
                assert torch.equal(sharded_rest.full_tensor(), plain_rest)
    finally:
        dist.destroy_process_group()
    # Skip the interpreter's teardown: after a DTensor collective on gloo, torch 2.13 aborts ~1 exit in 6
    # ("terminate called without an active exception") once all the work is done, with or without a
    # barrier or destroy_process_group; reproduced with torch alone. Only a clean pass gets here.
    os._exit(0)


@pytest.mark.slow  # two processes, each importing torch and laser (~9 s on 2 cores)
def test_sharded_fold_equals_the_plain_fold(tmp_path):
    torch.multiprocessing.spawn(fold_sharded_and_plain, args=(2, str(tmp_path / "init")), nprocs=2)
