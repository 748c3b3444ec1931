"""Supervised warm start ("SFT") of a policy on a task's training targets, cached on disk.

The paper fine-tunes its policy on the task's training split before preference training (its SFT
baseline); `policy.warm_start.steps > 0` does that here: full-weight AdamW steps on (prompt,
`Example.target`) pairs, the loss on the target only. The report's iteration-0 row then reads
"before preference training (SFT: N steps)"; with 0 steps it reads "(no warm start)". For the tiny
locally built policy this is what makes it answer some, not all, questions right before preference
training. The result is an ordinary model folder keyed by everything that shapes it, so the next run
skips the work.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch

from laser.hf import load_causal_lm, load_tokenizer
from laser.tasks.base import Task
from laser.tiny import fingerprint, save_model_folder

log = logging.getLogger(__name__)


def sft_tokens(tokenizer, prompt: str, target: str, max_tokens: int) -> tuple[list[int], list[int]]:
    """Prompt ids and target ids (+EOS), cut to fit `max_tokens`."""
    p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    p = p[-max_tokens // 2:]  # keep the end of a long prompt (the question) ...
    return p, t[: max_tokens - len(p)]  # ... and the start of a long target


def sft_batch(tokenizer, pairs: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Right-padded prompt+target ids whose labels are -100 outside the target (loss on answers only)."""
    rows = [p + t for p, t in pairs]
    labels = [[-100] * len(p) + t for p, t in pairs]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels]),
    }


def warm_start(
    model_name_or_path: str, task: Task, cache_dir: str, steps: int = 300, lr: float = 3e-3,
    batch_size: int = 32, max_tokens: int = 512, seed: int = 0, dtype: str = "float32",
) -> str:
    """Fine-tune all weights on (prompt, target) for `steps` steps; returns the cached folder."""
    examples = task.train_examples()
    key = fingerprint("sft", model_name_or_path, task.name, len(examples), examples[0].uid if examples else "",
                      steps, lr, batch_size, max_tokens, seed)
    folder = Path(cache_dir).expanduser() / "warm_start" / f"{task.name}-{key}"
    if (folder / "config.json").exists():
        log.info("warm start: reusing %s", folder)
        return str(folder)
    if not examples:
        raise ValueError(f"task '{task.name}' has no training examples to warm-start on")
    log.info("warm start: %d SFT steps on %s (cached afterwards in %s)", steps, task.name, folder)
    started = time.perf_counter()
    tokenizer = load_tokenizer(model_name_or_path)
    model = load_causal_lm(model_name_or_path, dtype, pad_token_id=tokenizer.pad_token_id)
    model.train()
    with torch.random.fork_rng(devices=[]):  # built or cached, the run's random stream is the same
        torch.manual_seed(seed)
        _train(model, tokenizer, task, examples, steps, lr, batch_size, max_tokens, random.Random(seed))
    save_model_folder(folder, model, tokenizer)
    log.info("warm start: done in %.1fs", time.perf_counter() - started)
    return str(folder)


def _train(model, tokenizer, task: Task, examples: list, steps: int, lr: float, batch_size: int,
           max_tokens: int, rng: random.Random) -> None:
    """AdamW with a one-cycle schedule on random batches of (prompt, target)."""
    tokenised: dict[int, tuple[list[int], list[int]]] = {}  # each example is tokenised once, not per step
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        chosen = [rng.randrange(len(examples)) for _ in range(batch_size)]
        for i in chosen:
            if i not in tokenised:
                example = examples[i]
                tokenised[i] = sft_tokens(tokenizer, task.format_prompt(example), example.target or example.answer,
                                          max_tokens)
        batch = sft_batch(tokenizer, [tokenised[i] for i in chosen])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            log.info("warm start step %d/%d loss %.3f", step + 1, steps, loss.item())
