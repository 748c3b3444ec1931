"""Supervised warm start ("SFT") of a policy on a task's training targets, cached on disk.

The paper fine-tunes its policy on the task's training split before preference training (its SFT
baseline); `policy.warm_start.steps > 0` does that here: full-weight AdamW steps on (prompt,
`Example.target`) pairs, the loss on the target only. The report's iteration-0 row then reads
"before preference training (SFT: N steps)"; with 0 steps it reads "(no warm start)". For the tiny
locally built policy this is what makes it answer some, not all, questions right before preference
training. The result is an ordinary model folder keyed by everything that shapes it, so the next run
skips the work.

A fixed step count cannot give every category the same start: categories learn at very different
speeds (after 400 steps the tiny policy gets ~93% of comparisons but ~57% of maxima right). With
`target_accuracy` the warm start aims at a competence instead: the last `check_examples` train
examples of each category are held back, every `check_every` steps the greedy accuracy on them is
measured per category, a category at the target is only replayed (at `REPLAY_WEIGHT`: dropped
entirely, a learned category collapses), and training stops once every category is there. The
checks are written to `warm_start.json` in the cached folder.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from laser.errors import LaserConfigError
from laser.hf import load_causal_lm, load_tokenizer
from laser.tasks.base import Example, Task
from laser.tiny import fingerprint, save_model_folder

log = logging.getLogger(__name__)

# A category at the target keeps this share of a below-target category's sampling weight: it is still
# trained a little, so it is not forgotten while the others catch up.
REPLAY_WEIGHT = 0.15
REPORT_FILE = "warm_start.json"  # the competence checks of a warm start to a target, in its folder


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
    target_accuracy: float | None = None, check_every: int = 25, check_examples: int = 64,
) -> str:
    """Fine-tune all weights on (prompt, target) for `steps` steps, or (with `target_accuracy`) until
    every category's greedy accuracy on held-out train examples reaches it; returns the cached folder."""
    examples = task.train_examples()
    key_parts = ["sft", model_name_or_path, task.name, len(examples), examples[0].uid if examples else "",
                 steps, lr, batch_size, max_tokens, seed]
    if target_accuracy is not None:  # without a target the key (the folder name) is the one it always was
        _check_target_knobs(target_accuracy, check_every, check_examples)
        key_parts += ["target", target_accuracy, check_every, check_examples, REPLAY_WEIGHT, [e.uid for e in examples]]
    folder = Path(cache_dir).expanduser() / "warm_start" / f"{task.name}-{fingerprint(*key_parts)}"
    if (folder / "config.json").exists():
        log.info("warm start: reusing %s", folder)
        if (folder / REPORT_FILE).exists():
            _log_final(json.loads((folder / REPORT_FILE).read_text()))
        return str(folder)
    if not examples:
        raise ValueError(f"task '{task.name}' has no training examples to warm-start on")
    log.info("warm start: %s%d SFT steps on %s (cached afterwards in %s)", "up to " if target_accuracy is not None
             else "", steps, task.name, folder)
    started = time.perf_counter()
    tokenizer = load_tokenizer(model_name_or_path)
    model = load_causal_lm(model_name_or_path, dtype, pad_token_id=tokenizer.pad_token_id)
    model.train()
    extra_files = None
    with torch.random.fork_rng(devices=[]):  # built or cached, the run's random stream is the same
        torch.manual_seed(seed)
        rng = random.Random(seed)
        if target_accuracy is None:
            _train(model, tokenizer, task, examples, steps, lr, max_tokens,
                   lambda: [rng.randrange(len(examples)) for _ in range(batch_size)])
        else:
            report = _train_to_target(model, tokenizer, task, examples, steps, lr, batch_size, max_tokens, rng,
                                      target_accuracy, check_every, check_examples)
            extra_files = {REPORT_FILE: json.dumps(report, indent=2) + "\n"}
    save_model_folder(folder, model, tokenizer, extra_files)
    log.info("warm start: done in %.1fs", time.perf_counter() - started)
    return str(folder)


def _train(model, tokenizer, task: Task, examples: list[Example], steps: int, lr: float, max_tokens: int,
           draw_batch: Callable[[], list[int]], after_step: Callable[[int], bool] | None = None) -> int:
    """AdamW with a one-cycle schedule over `steps` on batches of (prompt, target) from `draw_batch`
    (indices into `examples`); stops early when `after_step(steps_done)` says so. Returns the steps done."""
    tokenised: dict[int, tuple[list[int], list[int]]] = {}  # each example is tokenised once, not per step
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        chosen = draw_batch()
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
        if after_step is not None and after_step(step + 1):
            return step + 1
    return steps


# ----- warm start to a target competence ---------------------------------------------------------


def _train_to_target(model, tokenizer, task: Task, examples: list[Example], steps: int, lr: float,
                     batch_size: int, max_tokens: int, rng: random.Random, target: float, check_every: int,
                     check_examples: int) -> dict:
    """`_train` on all but the held-out examples, scheduled by `CompetenceTarget`; returns its report."""
    train, held_out = hold_out(examples, check_examples)
    schedule = CompetenceTarget(train, held_out, target, check_every, batch_size, rng,
                                lambda: greedy_accuracy(model, tokenizer, task, held_out, max_tokens))
    taken = _train(model, tokenizer, task, train, steps, lr, max_tokens, schedule.draw_batch, schedule.after_step)
    report = schedule.report(taken, steps)
    _log_final(report)
    return report


def sampling_weights(accuracies: Mapping[str, float], target: float,
                     replay_weight: float = REPLAY_WEIGHT) -> dict[str, float]:
    """Per category, the sampling weight of each of its examples: 1 below the target, `replay_weight`
    at or above it (replayed a little, so it is not forgotten)."""
    return {category: replay_weight if accuracy >= target else 1.0 for category, accuracy in accuracies.items()}


def target_reached(accuracies: Mapping[str, float], target: float) -> bool:
    """Whether every category is at or above the target: the warm start stops."""
    return all(accuracy >= target for accuracy in accuracies.values())


def held_out_count(available: int, per_category: int) -> int:
    """How many of a category's `available` train examples the checks hold back: `per_category` when
    more remain to train on; else (a small run, e.g. `task.train_limit=64`) a quarter, at least one,
    so the category still trains on the rest; none when it has a single example."""
    if available > per_category:
        return per_category
    return max(1, available // 4) if available >= 2 else 0


def hold_out(examples: list[Example], per_category: int) -> tuple[list[Example], dict[str, list[Example]]]:
    """The train examples left to train on, and the last `held_out_count` of each category (by name;
    examples without a category are one category, "") held back for the competence checks. A category
    too small for `per_category` holds back less, with one warning line; one with a single example is
    trained on and not checked."""
    by_category: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        by_category.setdefault(example.category, []).append(index)
    held: dict[str, list[int]] = {}
    for category in sorted(by_category):
        indices = by_category[category]
        count = held_out_count(len(indices), per_category)
        if count < per_category:
            log.warning("policy.warm_start.check_examples=%d: category %r has only %d train examples; its "
                        "competence checks use %d held-back example(s)", per_category, category, len(indices), count)
        if count:
            held[category] = indices[-count:]
    held_indices = {i for indices in held.values() for i in indices}
    train = [example for index, example in enumerate(examples) if index not in held_indices]
    return train, {category: [examples[i] for i in indices] for category, indices in held.items()}


@torch.no_grad()
def greedy_accuracy(model, tokenizer, task: Task, held_out: Mapping[str, list[Example]],
                    max_tokens: int = 512) -> dict[str, float]:
    """Per category, the share of `held_out` examples whose greedy response the task grades correct:
    one batched generate per category, of at most the longest gold target's length + 2 tokens (EOS,
    and one more so an answer that runs on, " 52" -> " 523", counts as wrong). Prompts are left padded
    here, so the tokenizer is left as it was; the model goes back to the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        return {category: _category_accuracy(model, tokenizer, task, examples, max_tokens)
                for category, examples in held_out.items()}
    finally:
        model.train(was_training)


def _category_accuracy(model, tokenizer, task: Task, examples: list[Example], max_tokens: int) -> float:
    prompts = [tokenizer(task.format_prompt(e), add_special_tokens=True)["input_ids"][-max_tokens // 2:]
               for e in examples]
    targets = [tokenizer(e.target or e.answer, add_special_tokens=False)["input_ids"] for e in examples]
    width, pad, eos = max(len(p) for p in prompts), tokenizer.pad_token_id, tokenizer.eos_token_id
    out = model.generate(
        input_ids=torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device),
        attention_mask=torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device),
        max_new_tokens=min(max(len(t) for t in targets) + 2, max_tokens), do_sample=False,
        pad_token_id=pad, eos_token_id=eos,
    )
    responses = [tokens[: tokens.index(eos)] if eos in tokens else tokens for tokens in out[:, width:].tolist()]
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    return sum(task.is_correct(text, e) for text, e in zip(texts, examples, strict=True)) / len(examples)


class CompetenceTarget:
    """The schedule of a warm start to a target: draws batches by category weight and, every
    `check_every` steps, measures each category's accuracy (`measure`), replays the categories at the
    target at `REPLAY_WEIGHT` and says when all of them are there."""

    def __init__(self, train: list[Example], held_out: Mapping[str, list[Example]], target: float,
                 check_every: int, batch_size: int, rng: random.Random,
                 measure: Callable[[], dict[str, float]]) -> None:
        self.train, self.target, self.check_every = train, target, check_every
        self.batch_size, self.rng, self.measure = batch_size, rng, measure
        self.check_examples = {category: len(examples) for category, examples in held_out.items()}
        self.checks: list[dict] = []
        self._set_weights(dict.fromkeys(held_out, 1.0))

    def _set_weights(self, weights: dict[str, float]) -> None:
        self.weights = weights
        cumulative, total = [], 0.0
        for example in self.train:
            total += weights.get(example.category, 1.0)  # a category without checks trains at full weight
            cumulative.append(total)
        self._cumulative = cumulative

    def draw_batch(self) -> list[int]:
        """Indices into `train`, each example drawn with its category's weight."""
        return self.rng.choices(range(len(self.train)), cum_weights=self._cumulative, k=self.batch_size)

    def after_step(self, step: int) -> bool:
        """Check every `check_every` steps; True once every category is at the target."""
        return step % self.check_every == 0 and self.check(step)

    def check(self, step: int) -> bool:
        """Measure, record and re-weight; True once every category is at the target."""
        accuracies = self.measure()
        self._set_weights(sampling_weights(accuracies, self.target))
        self.checks.append({"step": step, "accuracy": accuracies, "next_weights": self.weights})
        log.info("warm start check at step %d: greedy accuracy %s (target %.2f)", step, _format(accuracies),
                 self.target)
        return target_reached(accuracies, self.target)

    def report(self, steps_done: int, max_steps: int) -> dict:
        """What `warm_start.json` holds: the knobs, every check, and the accuracies the warm start ends at
        (measured once more if training did not stop at a check)."""
        if not self.checks or self.checks[-1]["step"] != steps_done:
            self.check(steps_done)
        final = self.checks[-1]["accuracy"]
        return {"target_accuracy": self.target, "check_every": self.check_every, "replay_weight": REPLAY_WEIGHT,
                "check_examples": self.check_examples, "max_steps": max_steps,
                "steps": steps_done, "reached": target_reached(final, self.target), "checks": self.checks,
                "final": final}


def _check_target_knobs(target_accuracy: float, check_every: int, check_examples: int) -> None:
    if not (isinstance(target_accuracy, int | float) and 0.0 <= target_accuracy <= 1.0):
        raise LaserConfigError(f"policy.warm_start.target_accuracy={target_accuracy!r} must be null or in [0, 1]")
    for key, value in (("check_every", check_every), ("check_examples", check_examples)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise LaserConfigError(f"policy.warm_start.{key}={value!r} must be an integer >= 1")


def _format(accuracies: Mapping[str, float]) -> str:
    return ", ".join(f"{category or '(no category)'} {accuracy:.2f}" for category, accuracy in accuracies.items())


def _log_final(report: dict) -> None:
    log.info("warm start: after %d of at most %d steps, greedy accuracy on held-out train examples %s "
             "(target %.2f %s)", report["steps"], report["max_steps"], _format(report["final"]),
             report["target_accuracy"], "reached" if report["reached"] else "NOT reached")
