"""Learned judges trained on-policy: on the warm-started policy's own samples, as real preference data is.

`learned_judges` trains each judge on synthetic (right, wrong) answers; the policy's own mistakes look
different, so those judges rank the policy's first samples worse than chance on some categories, and
preference training learns what they score high and the grader marks wrong. Here, as reward models are
trained in practice, the data is the policy's: for every training question the warm-started policy (the
one `load_policy` loads, `laser.policy.loading.policy_folder`) samples `samples_per_question` responses
with its own sampling settings, the task's grader marks each, and each question with both a right and a
wrong response gives up to `pairs_per_question` (chosen=right, rejected=wrong) pairs. A judge of category
c trains with a Bradley-Terry loss on `own_share` of its pairs from c, the rest from the other categories.

A share `held_out_share` of each category's training questions is never trained on: its on-policy pairs
measure each judge's gold pair accuracy per category (what each RM is good for), and the off-policy
judges' (`learned_judges`) on the very same pairs. Both land in each judge's `training.json` and the log.
The judges are cached under `<cache_dir>/tiny/onpolicy-judge-<category>-<key>`, keyed by everything that
shapes them, the policy's folder (the warm start's cache key) and sampling settings included.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from laser.errors import LaserConfigError
from laser.rewards.classifier import ClassifierRM, untrained_classifier_rm
from laser.rewards.learned_judges import (
    NOISE,
    bradley_terry_loss,
    classifier_scores,
    pair_accuracy,
    train_judge,
)
from laser.rewards.pool import RewardModelPool
from laser.tasks.base import Example, Task

log = logging.getLogger(__name__)
RECORD = "training.json"
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "max_prompt_tokens", "dtype")  # shape the samples


def split_questions(examples: Sequence[Example], held_out_share: float,
                    limit: int | None = None) -> tuple[list[Example], list[Example]]:
    """(train, held out) of the first `limit` questions of each category (None: all): the last
    `held_out_share` of them are held out."""
    by_category: dict[str, list[Example]] = {}
    for example in examples:
        if limit is not None and len(by_category.get(example.category, ())) >= limit:
            continue
        by_category.setdefault(example.category, []).append(example)
    train, held = [], []
    for items in by_category.values():
        cut = len(items) - round(len(items) * held_out_share)
        train += items[:cut]
        held += items[cut:]
    return train, held


def sample_policy(policy, task: Task, examples: Sequence[Example], n: int,
                  prompts_per_call: int = 64) -> list[list[str]]:
    """`n` sampled responses per example, as the run samples them (`Policy.sample`, the task's stop strings)."""
    responses: list[list[str]] = []
    for start in range(0, len(examples), prompts_per_call):
        batch = examples[start:start + prompts_per_call]
        texts = policy.sample(policy.encode([task.format_prompt(e) for e in batch]), n,
                              stop_strings=task.stop_strings).texts
        responses += [texts[i * n:(i + 1) * n] for i in range(len(batch))]
    return responses


def question_pairs(task: Task, example: Example, responses: Sequence[str], limit: int,
                   rng: random.Random) -> list[tuple[str, str]]:
    """Up to `limit` distinct ("prompt + right response", "prompt + wrong response") pairs of one question,
    graded by `task.is_correct`; none when the responses are all right or all wrong."""
    right = sorted({r for r in responses if task.is_correct(r, example)})
    wrong = sorted({r for r in responses if not task.is_correct(r, example)})
    combos = [(c, w) for c in right for w in wrong]
    rng.shuffle(combos)
    prompt = task.format_prompt(example)
    return [(prompt + c, prompt + w) for c, w in combos[:limit]]


def onpolicy_pairs(task: Task, sampled: Sequence[tuple[Example, Sequence[str]]], category: str, own_share: float,
                   pairs_per_question: int, rng: random.Random) -> list[tuple[str, str]]:
    """A judge's training pairs: the most pairs such that `own_share` of them come from `category` (the
    rest from the other categories), drawn from every question's `question_pairs`, shuffled."""
    own: list[tuple[str, str]] = []
    other: list[tuple[str, str]] = []
    for example, responses in sampled:
        (own if example.category == category else other).extend(
            question_pairs(task, example, responses, pairs_per_question, rng))
    if own_share >= 1.0 or not other:
        chosen = own
    elif own_share <= 0.0 or not own:
        chosen = other
    else:
        total = min(len(own) / own_share, len(other) / (1.0 - own_share))
        chosen = rng.sample(own, min(len(own), round(total * own_share))) + \
            rng.sample(other, min(len(other), round(total * (1.0 - own_share))))
    rng.shuffle(chosen)
    return chosen


def fit_judge(pairs: Sequence[tuple[str, str]], tokenizer, steps: int, batch_pairs: int, hidden_size: int,
              num_layers: int, lr: float, seed: int):
    """A tiny Llama classifier trained `steps` Bradley-Terry steps on batches drawn from `pairs`; (model, loss)."""
    from transformers import LlamaForSequenceClassification

    from laser.tiny import tiny_llama_config

    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):  # built or cached, the run's random stream is the same
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), hidden_size, num_layers,
                                                                 num_heads=4, num_labels=1))
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
        for _ in range(steps):
            batch = rng.sample(list(pairs), min(batch_pairs, len(pairs)))
            scores = classifier_scores(model, tokenizer, [c for c, _ in batch] + [r for _, r in batch])
            loss = bradley_terry_loss(scores[:len(batch)], scores[len(batch):])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    return model, loss.item()


def accuracy_table(records: Mapping[str, dict]) -> str:
    """The judges' held-out on-policy gold pair accuracy per category (on-policy / off-policy), as text."""
    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    categories = list(next(iter(records.values()))["heldout_onpolicy_pair_accuracy"])
    lines = ["judge (on-policy / off-policy) | " + " | ".join(categories)]
    for category, record in records.items():
        off = record.get("offpolicy_judge_heldout_onpolicy_pair_accuracy") or {}
        lines.append(f"{category}_judge | " + " | ".join(
            f"{shown(record['heldout_onpolicy_pair_accuracy'][c])} / {shown(off.get(c))}" for c in categories))
    return "\n".join(lines)


def judge_folders(task: Task, model: str, sampling: Mapping, cache_dir: str, knobs: Sequence) -> dict[str, Path]:
    """Category -> the cache folder of its on-policy judge, keyed by the task, the policy's folder (the warm
    start's own key: a different warm start, a different folder), its sampling settings and `knobs`."""
    from laser.tiny import fingerprint, task_texts

    texts = task_texts(task)
    uids = [e.uid for e in task.train_examples()]
    return {c: Path(cache_dir).expanduser() / "tiny" / ("onpolicy-judge-" + c + "-" + fingerprint(
        "onpolicy-judge", task.name, list(task.categories), uids, texts[:50], str(model), sorted(sampling.items()),
        c, *knobs)) for c in task.categories}


def train_onpolicy_judges(task: Task, policy: Mapping, cache_dir: str, samples_per_question: int = 8,
                          pairs_per_question: int = 2, held_out_share: float = 0.2, own_share: float = 0.9,
                          train_steps: int = 1000, batch_pairs: int = 64, hidden_size: int = 64, num_layers: int = 2,
                          lr: float = 1e-3, seed: int = 0, compare_offpolicy: bool = True,
                          question_limit: int | None = None) -> dict[str, str]:
    """Train (or reuse) the on-policy judge of every category of `task`; returns category -> its folder.
    `policy` holds the run's policy settings (model_name_or_path, tiny, warm_start, prebuilt and the
    sampling ones): the data is sampled from the very model the run starts from."""
    from laser.policy.loading import policy_folder
    from laser.policy.policy import Policy
    from laser.tiny import build_tokenizer, save_model_folder, task_texts

    model = policy_folder(task=task, cache_dir=cache_dir,
                          **{k: policy.get(k) for k in ("model_name_or_path", "tiny", "warm_start", "prebuilt")})
    sampling = {k: policy[k] for k in SAMPLING_KEYS if policy.get(k) is not None}
    knobs = [samples_per_question, pairs_per_question, held_out_share, own_share, train_steps, batch_pairs,
             hidden_size, num_layers, lr, seed] + ([] if question_limit is None else ["limit", question_limit])
    folders = judge_folders(task, model, sampling, cache_dir, knobs)
    if all((f / "config.json").exists() for f in folders.values()):
        records = {c: json.loads((f / RECORD).read_text()) for c, f in folders.items()}
        log.info("on-policy judges: reusing %s\n%s", [str(f) for f in folders.values()], accuracy_table(records))
        return {c: str(f) for c, f in folders.items()}

    log.info("on-policy judges: sampling %d responses per training question from %s", samples_per_question, model)
    train_q, held_q = split_questions(task.train_examples(), held_out_share, question_limit)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sampler = Policy(model, **sampling)
        responses = sample_policy(sampler, task, train_q + held_q, samples_per_question)
    del sampler
    sampled = list(zip(train_q + held_q, responses, strict=True))
    train_sampled, held_sampled = sampled[:len(train_q)], sampled[len(train_q):]
    held_rng = random.Random(f"{seed}/held-out")
    held_pairs = {c: [p for e, rs in held_sampled if e.category == c
                      for p in question_pairs(task, e, rs, pairs_per_question, held_rng)] for c in task.categories}
    sample_accuracy = {c: round(sum(task.is_correct(r, e) for e, rs in sampled if e.category == c for r in rs)
                                / max(1, sum(len(rs) for e, rs in sampled if e.category == c)), 3)
                       for c in task.categories}
    tokenizer = build_tokenizer(task_texts(task))
    records = {}
    for c, folder in folders.items():
        pairs = onpolicy_pairs(task, train_sampled, c, own_share, pairs_per_question, random.Random(f"{seed}/{c}"))
        if not pairs:
            raise LaserConfigError(f"rm_pool: the policy's samples give no (right, wrong) pair for judge {c!r}; "
                                   f"raise rm_pool.samples_per_question={samples_per_question}")
        judge, loss = fit_judge(pairs, tokenizer, train_steps, batch_pairs, hidden_size, num_layers, lr, seed)
        records[c] = {
            "category": c, "policy": str(model), "sampling": sampling, "samples_per_question": samples_per_question,
            "train_questions": len(train_q), "held_out_questions": len(held_q),
            "policy_sample_accuracy": sample_accuracy, "own_share": own_share,
            "train_pairs": len(pairs), "train_pairs_own": sum(p[0].startswith(tuple(
                task.format_prompt(e) for e in train_q if e.category == c)) for p in pairs),
            "heldout_pairs": {k: len(v) for k, v in held_pairs.items()},
            "train_steps": train_steps, "batch_pairs": batch_pairs, "final_loss": round(loss, 4),
            "heldout_onpolicy_pair_accuracy": {k: round(pair_accuracy(judge, tokenizer, v), 3) if v else None
                                               for k, v in held_pairs.items()},
        }
        if compare_offpolicy:
            records[c]["offpolicy_judge_heldout_onpolicy_pair_accuracy"] = offpolicy_accuracy(
                task, c, cache_dir, own_share, train_steps, seed, held_pairs)
        save_model_folder(folder, judge, tokenizer, {RECORD: json.dumps(records[c], indent=2) + "\n"})
    log.info("on-policy judges trained (held-out on-policy gold pair accuracy)\n%s", accuracy_table(records))
    return {c: str(f) for c, f in folders.items()}


def offpolicy_accuracy(task: Task, category: str, cache_dir: str, own_share: float, train_steps: int, seed: int,
                       held_pairs: Mapping[str, list[tuple[str, str]]]) -> dict[str, float | None]:
    """The off-policy judge of `category` (`rm_pool=learned_judges`'s, trained once if not cached) with the
    same own_share, train_steps and seed (at the defaults: that pool's judge), on the same held-out pairs."""
    from transformers import AutoModelForSequenceClassification

    from laser.hf import load_tokenizer

    folder = train_judge(task, category, cache_dir, own_share, train_steps, seed=seed)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = load_tokenizer(folder)
    return {k: round(pair_accuracy(model, tokenizer, v), 3) if v else None for k, v in held_pairs.items()}


def learned_judges_onpolicy(task: Task, policy: Mapping, cache_dir: str, samples_per_question: int = 8,
                            pairs_per_question: int = 2, held_out_share: float = 0.2, own_share: float = 0.9,
                            train_steps: int = 1000, seed: int = 0, compare_offpolicy: bool = True,
                            question_limit: int | None = None, noise_arm: bool = True, batch_size: int = 64, device: str = "cpu",
                            placement: str = "resident", timeout_s: float | None = None,
                            models: Mapping[str, object] | None = None) -> RewardModelPool:
    """The pool `<c>_judge` (trained on the policy's own samples) for each category c of `task`, then
    `untrained_classifier`, then `models`: the same arms as `learned_judges`, other training data."""
    if not 0.0 <= own_share <= 1.0:
        raise LaserConfigError(f"rm_pool.own_share={own_share!r} must be in [0, 1]")
    if not 0.0 < held_out_share < 1.0:
        raise LaserConfigError(f"rm_pool.held_out_share={held_out_share!r} must be in (0, 1)")
    for name, value in (("train_steps", train_steps), ("samples_per_question", samples_per_question),
                        ("pairs_per_question", pairs_per_question), ("question_limit", 1 if question_limit is None else question_limit)):
        if not isinstance(value, int) or value < 1:
            raise LaserConfigError(f"rm_pool.{name}={value!r} must be a positive integer")
    if samples_per_question < 2:
        raise LaserConfigError(f"rm_pool.samples_per_question={samples_per_question} must be >= 2 to make pairs")
    categories = list(getattr(task, "categories", ()) or ())
    if len(categories) < 2:
        raise LaserConfigError(f"rm_pool=learned_judges_onpolicy needs a task with 2 or more categories; "
                               f"task {task.name!r} has {categories}")
    folders = train_onpolicy_judges(task, policy, cache_dir, samples_per_question, pairs_per_question,
                                    held_out_share, own_share, train_steps, seed=seed,
                                    compare_offpolicy=compare_offpolicy, question_limit=question_limit)
    arms = {f"{c}_judge": ClassifierRM(folders[c], batch_size=batch_size, max_length=64, device=device,
                                       use_chat_template=False) for c in categories}
    if noise_arm:
        arms[NOISE] = untrained_classifier_rm(cache_dir, seed=seed, batch_size=batch_size)
    extra = {name: rm for name, rm in (models or {}).items() if rm is not None}
    clashes = sorted(set(arms) & set(extra))
    if clashes:
        raise LaserConfigError(f"rm_pool.models names {clashes}, which learned_judges_onpolicy already builds")
    return RewardModelPool({**arms, **extra}, device=device, placement=placement, timeout_s=timeout_s)
