"""The update's loss on a batch of pairs (laser/step/preference.py, laser/step/microbatch.py): each distinct
response computed once, and micro-batches that add up to the whole batch's gradient, per-pair losses and
metrics, against the plain way (every pair's chosen and rejected in one forward with grad, autograd on the
mean loss); and a step on the loss of the pairs an RM's scores imply moves the policy the scores' way."""

from __future__ import annotations

import pytest
import torch

from laser.policy.policy import Policy
from laser.step.losses import DPOLoss
from laser.step.microbatch import MicroBatching, distinct_sequences, micro_batches
from laser.step.pairs import build_preference_pairs
from laser.step.preference import policy_margins, preference_loss
from laser.tasks.arithmetic import Arithmetic
from laser.tiny import build_tiny_causal_lm

N, PAIRS_PER_PROMPT = 5, 3  # samples per prompt; the top-scored response is in all 3 of its prompt's pairs
LOSS = DPOLoss(beta=0.5, label_smoothing=0.1, nll_weight=1.0)
# float32, different micro-batch compositions: the gradient agrees to rounding, relative to its size
GRAD_RTOL, VALUE_ATOL = 1e-5, 1e-5


def tiny_model(tmp_path_factory) -> str:
    task = Arithmetic(num_train=50, num_test=10)
    return build_tiny_causal_lm(str(tmp_path_factory.mktemp("models")), task=task, hidden_size=32, num_layers=2,
                                num_heads=4)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model(tmp_path_factory)


def make_policy(model_path, dropout: float = 0.0) -> Policy:
    torch.manual_seed(0)
    policy = Policy(model_path, lora={"r": 4, "lora_alpha": 8, "lora_dropout": dropout,
                                      "target_modules": ["q_proj", "v_proj"]})
    with torch.no_grad():  # B != 0: the policy differs from its reference, so DPO's gradient is not trivial
        for _, layer in policy.lora_layers():
            layer.lora_B["default"].weight.normal_(0.0, 0.3)
    return policy


@pytest.fixture
def policy(model_path):
    return make_policy(model_path)


SCORES = torch.tensor([[5.0, 1.0, 2.0, 0.0, 3.0], [0.0, 4.0, 1.0, 2.0, 3.0], [1.0, 6.0, 0.0, 2.0, 3.0]])  # an RM's


def make_step():
    """3 prompts of different lengths x N responses of different lengths (response 4 of prompt 2 repeats
    response 1 token for token), and pairs built from fixed scores, as the step builds them."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 60, (k,), generator=g).tolist() for k in (4, 7, 5)]
    responses = [torch.randint(3, 60, (1 + (i * 7) % 6,), generator=g).tolist() for i in range(3 * N)]
    responses[2 * N + 4] = list(responses[2 * N + 1])
    pairs = build_preference_pairs(SCORES, PAIRS_PER_PROMPT)
    return prompts, responses, pairs


@pytest.fixture
def step():
    return make_step()


def trainable(policy):
    return [p for p in policy.parameters() if p.requires_grad]


def plain_gradient(policy, prompts, responses, pairs):
    """Today's whole-batch step before micro-batching: every pair's chosen and rejected through one forward
    each (shared responses again and again), autograd on the mean loss. Returns (losses, gradient)."""
    pair_prompts = [prompts[p] for p, _, _ in pairs] * 2
    sides = [responses[p * N + c] for p, c, _ in pairs] + [responses[p * N + r] for p, _, r in pairs]
    reference = policy.response_logps(pair_prompts, sides, reference=True)
    logps = policy.response_logps(pair_prompts, sides)
    lengths = torch.tensor([float(len(s)) for s in sides])
    count = len(pairs)
    out = LOSS(logps[:count], logps[count:], reference[:count], reference[count:], lengths[:count], lengths[count:])
    grads = torch.autograd.grad(out.losses.mean(), trainable(policy))
    return out, torch.cat([g.flatten() for g in grads])


def gradient_of(policy, result) -> torch.Tensor:
    for p in trainable(policy):
        p.grad = None
    result.backward(torch.Tensor.backward)
    return torch.cat([p.grad.flatten() for p in trainable(policy)])


def test_each_distinct_response_is_one_sequence_shared_by_its_pairs(step):
    prompts, responses, pairs = step
    sequences = distinct_sequences(prompts, responses, pairs, N)
    keys = {(p, tuple(responses[p * N + j])) for p, c, r in pairs for j in (c, r)}
    assert len(sequences) == len(keys) < 2 * len(pairs)  # the chosen of each prompt once, the repeat once
    for i, (p, c, r) in enumerate(pairs):
        assert sequences.prompts[sequences.chosen[i]] == prompts[p]
        assert sequences.responses[sequences.chosen[i]] == responses[p * N + c]
        assert sequences.responses[sequences.rejected[i]] == responses[p * N + r]
    assert len({int(sequences.chosen[i]) for i, (p, _, _) in enumerate(pairs) if p == 0}) == 1


def test_micro_batches_cover_every_sequence_once_longest_first(step):
    prompts, responses, pairs = step
    sequences = distinct_sequences(prompts, responses, pairs, N)
    assert micro_batches(sequences, None) == [list(range(len(sequences)))]
    assert micro_batches(sequences, len(sequences)) == [list(range(len(sequences)))]
    batches = micro_batches(sequences, 3)
    assert sorted(i for b in batches for i in b) == list(range(len(sequences)))
    assert [len(b) for b in batches[:-1]] == [3] * (len(batches) - 1)
    sizes = [len(sequences.prompts[i]) + len(sequences.responses[i]) for b in batches for i in b]
    assert sizes == sorted(sizes, reverse=True)


def test_each_distinct_response_runs_once_through_the_reference_and_the_policy(policy, step, monkeypatch):
    prompts, responses, pairs = step
    rows = {True: 0, False: 0}
    forward = Policy.response_logps

    def counting(self, prompt_ids, response_ids, reference=False):
        rows[reference] += len(response_ids)
        return forward(self, prompt_ids, response_ids, reference=reference)

    monkeypatch.setattr(Policy, "response_logps", counting)
    result = preference_loss(policy, prompts, responses, pairs, N, LOSS)
    distinct = len(distinct_sequences(prompts, responses, pairs, N))
    assert rows == {True: distinct, False: distinct}  # one micro-batch: the graph of its forward is reused
    result.backward(torch.Tensor.backward)
    assert rows == {True: distinct, False: distinct}


@pytest.mark.parametrize("micro_batch_size", [None, 1, 3, 100])
def test_micro_batches_give_the_whole_batch_gradient_losses_and_metrics(policy, step, micro_batch_size):
    prompts, responses, pairs = step
    plain, expected = plain_gradient(policy, prompts, responses, pairs)
    result = preference_loss(policy, prompts, responses, pairs, N, LOSS, MicroBatching(micro_batch_size))
    got = gradient_of(policy, result)
    assert expected.norm() > 0
    assert (got - expected).norm() <= GRAD_RTOL * expected.norm()
    assert torch.allclose(result.losses, plain.losses.detach(), atol=VALUE_ATOL)
    assert torch.allclose(result.dpo_losses, plain.dpo_losses.detach(), atol=VALUE_ATOL)
    margins = plain.chosen_rewards - plain.rejected_rewards
    assert result.metrics["rewards/margins"] == pytest.approx(float(margins.mean()), abs=VALUE_ATOL)
    assert result.metrics["rewards/accuracies"] == float((margins > 0).float().mean())
    assert result.metrics["train/nll_loss"] == pytest.approx(float(plain.nll_losses.mean()), abs=VALUE_ATOL)
    assert result.chosen_lengths.tolist() == [float(len(responses[p * N + c])) for p, c, _ in pairs]


def test_policy_margins_are_chosen_minus_rejected_whatever_the_micro_batches(policy, step):
    prompts, responses, pairs = step
    whole = policy_margins(policy, prompts, responses, pairs, N)
    chosen = policy.response_logps([prompts[p] for p, _, _ in pairs], [responses[p * N + c] for p, c, _ in pairs])
    rejected = policy.response_logps([prompts[p] for p, _, _ in pairs], [responses[p * N + r] for p, _, r in pairs])
    assert torch.allclose(whole, (chosen - rejected).detach(), atol=VALUE_ATOL)
    assert torch.allclose(policy_margins(policy, prompts, responses, pairs, N, MicroBatching(2)), whole,
                          atol=VALUE_ATOL)


def test_a_rerun_micro_batch_draws_the_dropout_masks_of_its_first_run(model_path, step):
    """LoRA dropout: each micro-batch's forward with grad must be the forward whose log-probs gave the loss
    (same masks), and the random stream must go on as if each forward had run once."""
    prompts, responses, pairs = step
    policy = make_policy(model_path, dropout=0.5)
    policy.model.train()
    torch.manual_seed(1)
    result = preference_loss(policy, prompts, responses, pairs, N, LOSS, MicroBatching(2))
    after_measuring = torch.rand(1)
    torch.manual_seed(1)
    result = preference_loss(policy, prompts, responses, pairs, N, LOSS, MicroBatching(2))
    pass_ = result.policy_pass
    sums = []
    result.backward(lambda total: (sums.append(float(total)), total.backward()))
    expected = [float((pass_.values[b] * result.weights[b]).sum()) for b in pass_.batches]
    assert len(sums) == len(pass_.batches) > 1
    assert sums == pytest.approx(expected, abs=1e-6)
    assert torch.equal(torch.rand(1), after_measuring)


def test_a_process_with_fewer_micro_batches_runs_empty_ones_that_change_nothing(policy, step, monkeypatch):
    """Several processes: every one runs as many micro-batches (forwards and backwards) as the one with the
    most, so that DDP's and FSDP's collectives pair up; the extra ones carry weight 0."""
    prompts, responses, pairs = step
    _, expected = plain_gradient(policy, prompts, responses, pairs)
    own = len(micro_batches(distinct_sequences(prompts, responses, pairs, N), 3))
    batching = MicroBatching(3, agree=lambda count: count + 2)  # another rank has two more
    forwards = []
    forward = Policy.response_logps
    monkeypatch.setattr(Policy, "response_logps", lambda self, *a, **k: forwards.append(1) or forward(self, *a, **k))
    result = preference_loss(policy, prompts, responses, pairs, N, LOSS, batching)
    backwards = []
    for p in trainable(policy):
        p.grad = None
    result.backward(lambda total: (backwards.append(1), total.backward()))
    got = torch.cat([p.grad.flatten() for p in trainable(policy)])
    assert len(forwards) == 3 * (own + 2) and len(backwards) == own + 2  # reference, policy, rerun
    assert (got - expected).norm() <= GRAD_RTOL * expected.norm()
    assert len(result.policy_pass.batches) == own + 2 and result.policy_pass.batches[-1] == []


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["scores", "reversed_scores"])
def test_a_step_on_the_loss_moves_the_policy_towards_what_the_scores_prefer(model_path, step, sign):
    """The pairs an RM's scores imply (its top response against its lowest, per prompt), and one small gradient
    step on their loss: every pair's policy margin, log pi(chosen) - log pi(rejected), grows. Reversed scores
    imply the reversed pairs, and the same step then shrinks every margin of the original pairs."""
    prompts, responses, _ = step
    grouped = [[tuple(responses[p * N + j]) for j in range(N)] for p in range(len(prompts))]
    pairs = build_preference_pairs(SCORES, 1, responses=grouped)
    assert pairs == [(0, 0, 3), (1, 1, 0), (2, 1, 2)]
    implied = build_preference_pairs(sign * SCORES, 1, responses=grouped)
    assert implied == (pairs if sign > 0 else [(p, r, c) for p, c, r in pairs])
    policy = make_policy(model_path)
    before = policy_margins(policy, prompts, responses, pairs, N)
    result = preference_loss(policy, prompts, responses, implied, N, LOSS)
    chosen = policy.response_logps([prompts[p] for p, _, _ in implied], [responses[p * N + c] for p, c, _ in implied])
    assert torch.allclose(result.chosen_logps, chosen.detach(), atol=VALUE_ATOL)
    gradient_of(policy, result)
    with torch.no_grad():
        for p in trainable(policy):
            p -= 0.01 * p.grad
    after = policy_margins(policy, prompts, responses, pairs, N)
    assert ((after - before) * sign > 0).all(), (before, after)
