"""Log-probabilities of tokens from a causal LM's logits: what `Policy.response_logps` returns, what the
preference losses (`laser.step.losses`) consume and what the likelihood RMs score with. Pure functions,
unit-tested by hand and, for the gradient, against plain autograd (`torch.autograd.gradcheck`).

log p(label) = logit[label] - logsumexp(logits), computed over chunks of at most `CHUNK_ELEMENTS` logits,
each upcast to at least float32 on its own: a full log_softmax would hold a second [N, T, V] tensor (and
a bfloat16 model's logits a float32 copy of them), which at a 128k vocabulary is the step's largest
allocation. For backward, autograd's logsumexp would keep every float32 row it upcast (twice the bf16
logits); `TokenLogps` keeps only the logits in their own dtype and the logsumexp [N, T], and recomputes
the softmax chunk by chunk in backward.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 22  # logits upcast at once: 16 MiB in float32 (32 positions at a 128k vocabulary)


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.promote_types(logits.dtype, torch.float32)


def _chunks(rows: int, vocab: int) -> list[slice]:
    step = max(1, CHUNK_ELEMENTS // max(vocab, 1))
    return [slice(start, start + step) for start in range(0, rows, step)]


def _token_logps_and_lse(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(labels[n, t]) under logits[n, t] and the logsumexp, both [N, T] in at least float32."""
    dtype = _compute_dtype(logits)
    flat = logits.flatten(0, 1)  # a view of the model's contiguous logits
    lse = torch.empty(flat.shape[0], dtype=dtype, device=logits.device)
    for rows in _chunks(flat.shape[0], flat.shape[1]):
        lse[rows] = torch.logsumexp(flat[rows].to(dtype), dim=-1)
    picked = torch.gather(flat, 1, labels.reshape(-1, 1)).squeeze(1).to(dtype)
    return (picked - lse).view(labels.shape), lse.view(labels.shape)


class TokenLogps(torch.autograd.Function):
    """log p(labels) per position [N, T] from logits [N, T, V], with a backward that holds the logits in
    their own dtype and the logsumexp [N, T], and no float32 copy of the vocabulary."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        token, lse = _token_logps_and_lse(logits, labels)
        ctx.save_for_backward(logits, labels, lse)
        return token

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # d token[n, t] / d logits[n, t, v] = onehot(label)[v] - softmax(logits[n, t])[v]
        logits, labels, lse = ctx.saved_tensors
        dtype = _compute_dtype(logits)
        flat, weight = logits.flatten(0, 1), grad.reshape(-1, 1).to(dtype)
        lse, labels = lse.reshape(-1, 1), labels.reshape(-1, 1)
        out = torch.empty(flat.shape, dtype=logits.dtype, device=logits.device)
        for rows in _chunks(flat.shape[0], flat.shape[1]):  # one float32 chunk at a time, worked on in place
            chunk = flat[rows].to(dtype, copy=True).sub_(lse[rows]).exp_().mul_(-weight[rows])
            out[rows] = chunk.scatter_add_(1, labels[rows], weight[rows])
        return out.view(logits.shape), None


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(labels[n, t]) under logits[n, t] (no shift: align them first), [N, T], at least float32."""
    return TokenLogps.apply(logits, labels)


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of `labels` under `logits`, counting only positions where `loss_mask` is 1.

    logits [N, T, V] predict the token at t+1 from position t; labels and loss_mask are [N, T] aligned
    with the input ids (the shift happens here, without copying the logits). Returns [N], at least float32.
    """
    next_tokens = torch.nn.functional.pad(labels[:, 1:], (0, 1))  # the last position predicts nothing
    token = token_logps(logits, next_tokens)[:, :-1]
    return (token * loss_mask[:, 1:].to(token.dtype)).sum(-1)
