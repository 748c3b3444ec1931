"""Learned judges: small neural RMs trained locally, each mostly on one category of the task.

`category_judges` corrupts an exact verifier; these are the other kind the paper's pools are made of:
reward models that learned from data and are imperfect everywhere. For each category c of the task a
tiny Llama sequence classifier is trained, once, with a Bradley-Terry loss on pairs (right answer, wrong
answer) built from the task's *training* questions, `own_share` of them from c and the rest from the
other categories. Each judge then ranks its own category's answers well and the others worse (trained
on one category alone, a judge applies its rule elsewhere: the maximum judge prefers the larger number
on a "which is smaller" question). The responses in the pairs vary as a small policy's samples do
(missing space, trailing digits), so the judges learn the grader's notion of right, not one format. A
randomly initialised classifier is the fourth, uninformative arm.

The judges are cached like the warm start (`<cache_dir>/tiny/learned-judge-<category>-<hash>`), with a
`training.json` that records how they were made and their pair accuracy per category on the task's test
questions, and score like any hub RM (`ClassifierRM`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path

import torch

from laser.errors import LaserConfigError
from laser.rewards.classifier import ClassifierRM, untrained_classifier_rm
from laser.rewards.pool import RewardModelPool
from laser.tasks.base import Example, Task

NOISE = "untrained_classifier"  # the arm that learned nothing


def candidate_response(example: Example, rng: random.Random, max_number: int, hard_share: float = 0.7) -> str:
    """A response a policy might give: an answer (the right one, or a wrong one: the other word for yes/no;
    for a number one of the question's operands with probability `hard_share`, else any integer up to
    `max_number`), with or without its leading space, and sometimes trailing junk (more digits, a space
    and a number, a repeated character), as a small policy's samples have. Whether it is right is for
    the task's grader to say (`task.is_correct`), not for this function."""
    if rng.random() < 0.5:
        answer = example.answer
    elif example.answer in ("yes", "no"):
        answer = "no" if example.answer == "yes" else "yes"
    else:
        operands = [str(v) for k, v in sorted(example.meta.items()) if k in ("a", "b")]
        answer = rng.choice(operands) if operands and rng.random() < hard_share else str(rng.randint(0, max_number))
    tail = rng.choice(["", "", "", str(rng.randint(0, 999)), f" {rng.randint(0, 99)}", answer[-1] * rng.randint(1, 5)])
    return ("" if rng.random() < 0.2 else " ") + answer + tail


def preference_pairs(task: Task, category: str, own_share: float, count: int, rng: random.Random,
                     examples: list[Example]) -> list[tuple[str, str]]:
    """`count` (chosen, rejected) texts "prompt + response": a right and a wrong response to one question
    (as `task.is_correct` grades them), drawn from `category` with probability `own_share`, else from the
    other categories."""
    own = [e for e in examples if e.category == category]
    other = [e for e in examples if e.category != category] or own
    max_number = int(getattr(task, "max_operand", 100))
    pairs = []
    while len(pairs) < count:
        example = rng.choice(own if rng.random() < own_share else other)
        graded: dict[bool, str] = {}
        while len(graded) < 2:
            response = candidate_response(example, rng, max_number)
            graded.setdefault(task.is_correct(response, example), response)
        prompt = task.format_prompt(example)
        pairs.append((prompt + graded[True], prompt + graded[False]))
    return pairs


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged: the loss reward models are trained with."""
    return -torch.nn.functional.logsigmoid(chosen_scores - rejected_scores).mean()


def pair_accuracy(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    """The share of pairs whose right answer the classifier scores higher."""
    with torch.no_grad():
        scores = classifier_scores(model, tokenizer, [c for c, _ in pairs] + [r for _, r in pairs])
    return (scores[: len(pairs)] > scores[len(pairs):]).float().mean().item()


def classifier_scores(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """One score per text, with gradients (training); `ClassifierRM` scores the same way at run time."""
    tokenizer.padding_side = "right"  # the classifier reads the last non-pad token
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    return model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits[:, 0]


def train_judge(task: Task, category: str, cache_dir: str, own_share: float = 0.9, train_steps: int = 1000,
                batch_pairs: int = 64, hidden_size: int = 64, num_layers: int = 2, lr: float = 1e-3,
                seed: int = 0) -> str:
    """Train (or reuse) the judge of `category`; returns its Hugging Face folder."""
    from transformers import LlamaForSequenceClassification

    from laser.tiny import build_tokenizer, fingerprint, save_model_folder, task_texts, tiny_llama_config

    texts = task_texts(task)
    key = fingerprint("learned-judge", task.name, list(task.categories), len(texts), texts[:50], category,
                      own_share, train_steps, batch_pairs, hidden_size, num_layers, lr, seed)
    folder = Path(cache_dir).expanduser() / "tiny" / f"learned-judge-{category}-{key}"
    if (folder / "config.json").exists():
        return str(folder)
    tokenizer = build_tokenizer(texts)
    rng = random.Random(f"{seed}/{category}")
    with torch.random.fork_rng(devices=[]):  # built or cached, the run's random stream is the same
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), hidden_size, num_layers,
                                                                 num_heads=4, num_labels=1))
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
        for _ in range(train_steps):
            pairs = preference_pairs(task, category, own_share, batch_pairs, rng, task.train_examples())
            scores = classifier_scores(model, tokenizer, [c for c, _ in pairs] + [r for _, r in pairs])
            loss = bradley_terry_loss(scores[:batch_pairs], scores[batch_pairs:])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    test_rng = random.Random(f"test/{category}")
    accuracy = {c: round(pair_accuracy(model, tokenizer, preference_pairs(
        task, c, 1.0, 200, test_rng, task.test_examples())), 3) for c in task.categories}
    made = {"category": category, "own_share": own_share, "train_steps": train_steps, "final_loss": loss.item(),
            "test_pair_accuracy": accuracy}
    save_model_folder(folder, model, tokenizer, {"training.json": json.dumps(made, indent=2)})
    return str(folder)


def learned_judges(task: Task, cache_dir: str, own_share: float = 0.9, train_steps: int = 1000,
                   seed: int = 0, noise_arm: bool = True, batch_size: int = 64, device: str = "cpu",
                   placement: str = "resident", timeout_s: float | None = None,
                   models: Mapping[str, object] | None = None) -> RewardModelPool:
    """The pool `<c>_judge` (a learned classifier) for each category c of `task`, then `untrained_classifier`:
    K = len(task.categories) + 1, then `models` (how `bandit=oracle` adds its verifier arm). See the module
    docstring."""
    if not 0.0 <= own_share <= 1.0:
        raise LaserConfigError(f"rm_pool.own_share={own_share!r} must be in [0, 1]")
    if not isinstance(train_steps, int) or train_steps < 1:
        raise LaserConfigError(f"rm_pool.train_steps={train_steps!r} must be a positive integer")
    categories = list(getattr(task, "categories", ()) or ())
    if len(categories) < 2:
        raise LaserConfigError(f"rm_pool=learned_judges needs a task with 2 or more categories; "
                               f"task {task.name!r} has {categories}")
    arms = {f"{c}_judge": ClassifierRM(train_judge(task, c, cache_dir, own_share, train_steps, seed=seed),
                                       batch_size=batch_size, max_length=64, device=device,
                                       use_chat_template=False)
            for c in categories}
    if noise_arm:
        arms[NOISE] = untrained_classifier_rm(cache_dir, seed=seed, batch_size=batch_size)
    extra = {name: rm for name, rm in (models or {}).items() if rm is not None}
    clashes = sorted(set(arms) & set(extra))
    if clashes:
        raise LaserConfigError(f"rm_pool.models names {clashes}, which learned_judges already builds")
    return RewardModelPool({**arms, **extra}, device=device, placement=placement, timeout_s=timeout_s)
