"""Log-probabilities of response tokens from a causal LM's logits: what `Policy.response_logps` returns
and the preference losses (`laser.step.losses`) consume. A pure function, unit-tested by hand."""

from __future__ import annotations

import torch


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of `labels` under `logits`, counting only positions where `loss_mask` is 1.

    logits [N, T, V] predict the token at t+1 from position t; labels and loss_mask are [N, T] aligned
    with the input ids (the shift happens here). Returns [N].

    log p(label) = logit[label] - logsumexp(logits), one row at a time and upcast to at least float32
    row by row: a full log_softmax would hold a second [N, T, V] tensor (and a bfloat16 model's
    logits a float32 copy of them), which at a 128k vocabulary is the step's largest allocation.
    """
    logits = logits[:, :-1, :]
    labels = labels[:, 1:]
    compute_dtype = torch.promote_types(logits.dtype, torch.float32)
    mask = loss_mask[:, 1:].to(compute_dtype)
    picked = torch.gather(logits, 2, labels.unsqueeze(-1)).squeeze(-1).to(compute_dtype)
    normaliser = torch.stack([torch.logsumexp(row.to(compute_dtype), dim=-1) for row in logits])
    return ((picked - normaliser) * mask).sum(-1)
