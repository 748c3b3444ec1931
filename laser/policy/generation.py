"""Sampling from a Hugging Face causal LM in one or more `generate` calls.

One call for the whole batch is fastest, but its KV cache holds every sequence at once: at the paper's
step (16 prompts x 30 samples x (prompt + 512) tokens, Llama-3-8B) that is over 100 GiB
(`python -m laser.plan +experiment=gsm8k`). `prompts_per_call` splits the batch into calls of that many
prompts (each still sampling its n responses in the same call), so the cache shrinks in proportion at
the cost of sequential calls. The calls draw from the same RNG stream, one after another.
"""

from __future__ import annotations

import torch


def generate_responses(model, enc: dict[str, torch.Tensor], num_return_sequences: int,
                       prompts_per_call: int | None, **generate_kwargs) -> list[list[int]]:
    """The generated tokens of each returned sequence, prompt-major (sequence i answers prompt
    i // num_return_sequences), without the prompt; `prompts_per_call=None` makes one call."""
    batch, width = enc["input_ids"].shape
    step = prompts_per_call or batch
    generated: list[list[int]] = []
    for start in range(0, batch, step):
        chunk = {key: value[start:start + step] for key, value in enc.items()}
        out = model.generate(**chunk, num_return_sequences=num_return_sequences, **generate_kwargs)
        generated += out[:, width:].tolist()  # left padding: every chunk keeps the batch's prompt width
    return generated
