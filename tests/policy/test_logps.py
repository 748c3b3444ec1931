"""Response log-probs from logits (`laser.policy.logps.sequence_logps`) against hand-computed values, and their
gradient against plain autograd (gradcheck in float64; no float32 copy of bfloat16 logits kept for backward)."""

from __future__ import annotations

import math

import pytest
import torch

from laser.policy import logps
from laser.policy.logps import sequence_logps


def hand_log_softmax(row, index):
    return row[index] - math.log(sum(math.exp(v) for v in row))


def test_sequence_logps_shifts_and_masks_by_hand():
    # One sequence, T=4, V=3. logits[t] predicts labels[t + 1].
    logits_rows = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0], [9.0, -9.0, 0.0]]
    labels = [0, 2, 1, 0]
    mask = [0, 1, 1, 0]  # counts labels[1] (from logits[0]) and labels[2] (from logits[1]) only
    out = sequence_logps(
        torch.tensor([logits_rows], dtype=torch.float64), torch.tensor([labels]), torch.tensor([mask])
    )
    expected = hand_log_softmax(logits_rows[0], 2) + hand_log_softmax(logits_rows[1], 1)
    assert out.shape == (1,)
    assert out.item() == pytest.approx(expected, abs=1e-12)


def test_sequence_logps_masked_positions_contribute_nothing():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, dtype=torch.float64)
    labels = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]])
    base = sequence_logps(logits, labels, mask)
    # Change logits/labels only where the mask (after the shift) is 0: the result must not move.
    logits2, labels2 = logits.clone(), labels.clone()
    logits2[0, 3] += 50.0  # predicts labels[0, 4], masked
    logits2[0, 0] += 50.0  # predicts labels[0, 1], masked
    logits2[:, 4] += 50.0  # last position predicts nothing
    labels2[0, 4] = (labels[0, 4] + 1) % 7
    labels2[:, 0] = (labels[:, 0] + 1) % 7  # first label has no predicting position
    assert torch.allclose(sequence_logps(logits2, labels2, mask), base, atol=1e-12)
    assert sequence_logps(logits, labels, torch.zeros_like(mask)).tolist() == [0.0, 0.0]


def test_sequence_logps_second_row_by_hand():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    out = sequence_logps(logits, labels, mask)
    rows = logits.tolist()
    for n, first in ((0, 1), (1, 2)):
        expected = sum(hand_log_softmax(rows[n][t - 1], labels[n, t].item()) for t in range(first, 4))
        assert out[n].item() == pytest.approx(expected, abs=1e-10)


def test_sequence_logps_of_bfloat16_logits_are_float32_and_match_float64():
    """bf16 logits are upcast row by row (no float32 copy of the whole tensor): float32 out, and the
    same values as a float64 log_softmax of the same bf16 numbers."""
    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 50) * 4).to(torch.bfloat16)
    labels = torch.randint(0, 50, (3, 5))
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    out = sequence_logps(logits, labels, mask)
    reference = torch.gather(logits[:, :-1].double().log_softmax(-1), 2, labels[:, 1:, None]).squeeze(-1)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), (reference * mask[:, 1:]).sum(-1), atol=1e-4)


# ---- the backward: the gradient of plain autograd, without a float32 copy of the vocabulary -------------


def plain_sequence_logps(logits, labels, mask):
    """The textbook form: a full log_softmax in float32 or wider, gathered and masked (what autograd knows)."""
    logprobs = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    return (torch.gather(logprobs, 2, labels[:, 1:, None]).squeeze(-1) * mask[:, 1:]).sum(-1)


@pytest.mark.parametrize("chunk", [1 << 22, 7])  # one chunk; chunks of one position, splitting rows
def test_sequence_logps_gradient_passes_gradcheck_in_float64(chunk, monkeypatch):
    monkeypatch.setattr(logps, "CHUNK_ELEMENTS", chunk)
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (3, 5))
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert torch.autograd.gradcheck(lambda x: sequence_logps(x, labels, mask), (logits,))
    weights = torch.randn(3, dtype=torch.float64)
    (ours,) = torch.autograd.grad((sequence_logps(logits, labels, mask) * weights).sum(), logits)
    (plain,) = torch.autograd.grad((plain_sequence_logps(logits, labels, mask) * weights).sum(), logits)
    assert torch.allclose(ours, plain, atol=1e-12)


def test_bfloat16_backward_keeps_no_float32_copy_of_the_logits_and_matches_plain_autograd():
    torch.manual_seed(0)
    logits = (torch.randn(4, 6, 64) * 3).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 64, (4, 6))
    mask = torch.ones(4, 6, dtype=torch.long)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        ours = sequence_logps(logits, labels, mask)
    vocabulary_wide = [t for t in saved if t.dim() and t.shape[-1] == 64]  # per row or whole: any upcast copy
    assert vocabulary_wide and all(t.dtype == torch.bfloat16 for t in vocabulary_wide)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    (plain,) = torch.autograd.grad(plain_sequence_logps(logits, labels, mask).sum(), logits)
    assert grad.dtype == torch.bfloat16
    assert torch.allclose(grad.float(), plain.float(), atol=1e-2)  # one bfloat16 rounding of values below 1
