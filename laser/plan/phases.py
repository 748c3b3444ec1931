"""The phases of one LASeR step, each run on a fake model exactly as the step runs it.

The policy's phases share one trace (`policy_trace`): its weights, LoRA adapter and AdamW state stay
live, and each phase's peak is measured above them. The shapes are the config's bounds: every prompt
`prompt_tokens` long (a batch is left padded to its longest prompt) and every response `new_tokens`
long (the plan is for the step in which no response stops early).

- context: the bandit's context (`context.vectors`: the policy's last-token state, no grad).
- generation: prefill of prompts x samples sequences, then the last decoding step, when the KV
  cache holds prompt + new_tokens positions for every sequence (HF `generate`'s sampling).
- update: one micro-batch of (prompt + response) sequences: the reference's log-probs (adapter
  disabled, no grad), the policy's, backward, AdamW step (`Policy.response_logps`).
- evaluation: greedy generation of `eval_prompts` prompts, one response each.
- an RM's scoring (`rm_trace`): its weights and one forward of `batch_size` x `max_length` tokens,
  through the RM adapter's own scoring code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from laser.plan.trace import (
    Mark,
    ModelSpec,
    adamw_with_state,
    fake_device,
    measure_phases,
    meta_model,
    traced_policy,
)

POLICY_PHASES = ("context", "generation", "update", "evaluation")


@dataclass(frozen=True)
class StepShape:
    """The sizes of one LASeR step that set its memory."""

    prompts: int  # data.batch_size
    samples: int  # laser.num_samples
    pairs: int  # laser.pairs_per_prompt
    prompt_tokens: int  # tokens per (left-padded) prompt
    new_tokens: int  # policy.max_new_tokens
    micro_batch: int | None = None  # laser.micro_batch_size (None: every update sequence at once)
    temperature: float = 1.0
    top_p: float = 1.0
    eval_prompts: int = 1  # data.eval_batch_size
    prompts_per_generate: int | None = None  # policy.prompts_per_generate (None: every prompt in one call)

    @property
    def generate_prompts(self) -> int:
        """Prompts in one training generate call (its KV cache holds their `samples` sequences each)."""
        return min(self.prompts_per_generate or self.prompts, self.prompts)

    @property
    def update_sequences(self) -> int:
        """Distinct sequences an update computes: per prompt its chosen response and up to `pairs`
        rejected ones (never more than it sampled)."""
        return self.prompts * min(self.samples, self.pairs + 1)

    @property
    def micro_sequences(self) -> int:
        """Sequences per forward/backward of the update."""
        return min(self.micro_batch or self.update_sequences, self.update_sequences)


def prompt_batch(count: int, length: int) -> dict[str, torch.Tensor]:
    """`count` left-padded prompts of `length` tokens (one pad each, so the padded-mask path runs)."""
    ids = torch.ones(count, length, dtype=torch.long)
    mask = torch.ones(count, length, dtype=torch.long)
    mask[:, 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, greedy: bool) -> torch.Tensor:
    """One token per row, as HF `generate` picks it (a float32 copy of the last logits, the
    temperature and top-p warpers, softmax, multinomial)."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    scores = logits.to(copy=True, dtype=torch.float32)
    if greedy:
        return scores.argmax(-1)
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.multinomial(torch.softmax(scores, dim=-1), 1)


def generation(policy: Any, prompts: int, samples: int, shape: StepShape, mark: Mark, greedy: bool = False) -> None:
    """`generate` of `samples` responses to each of `prompts` prompts: the prefill, then the last step."""
    model = policy.model
    was_training = model.training
    model.eval()
    count, total = prompts * samples, shape.prompt_tokens + shape.new_tokens
    keep = {"logits_to_keep": 1} if policy.keeps_logits else {}
    # transformers >= 5.x names the cache argument `cache` (`past_key_values` before, deprecated since)
    takes_cache = "cache" in inspect.signature(model.get_base_model().forward).parameters
    cache_arg = "cache" if takes_cache else "past_key_values"
    with torch.no_grad():
        ids = torch.ones(count, total, dtype=torch.long)  # the sequences generate returns
        cache = new_cache(model.config)
        mark("prefill")
        out = model(**prompt_batch(count, shape.prompt_tokens), **{cache_arg: cache}, use_cache=True, **keep)
        sample_next(out.logits[:, -1], shape.temperature, shape.top_p, greedy)
        del out
        mark("decode")
        grow_cache(cache, model, count, shape.new_tokens - 1)  # the cache before the last step
        mask = torch.ones(count, total, dtype=torch.long)
        out = model(input_ids=ids[:, -1:], attention_mask=mask, **{cache_arg: cache}, use_cache=True, **keep)
        sample_next(out.logits[:, -1], shape.temperature, shape.top_p, greedy)
    model.train(was_training)


def new_cache(config: Any) -> Any:
    """The KV cache `generate` makes (a `DynamicCache`, per-layer types from the config when supported)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=config)
    except TypeError:  # transformers < 4.56: no per-layer config
        return DynamicCache()


def grow_cache(cache: Any, model: torch.nn.Module, count: int, tokens: int) -> None:
    """Append `tokens` positions to every layer's keys and values, as decoding does (one cat per layer)."""
    if tokens <= 0:
        return
    config = model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dtype = model.get_input_embeddings().weight.dtype
    for layer in range(config.num_hidden_layers):
        keys = torch.zeros(count, heads, tokens, head_dim, dtype=dtype)
        cache.update(keys, torch.zeros_like(keys), layer)


def update(policy: Any, optimiser: torch.optim.Optimizer, shape: StepShape, mark: Mark) -> None:
    """One micro-batch of the update: reference log-probs (no grad), policy log-probs, backward, step."""
    policy.model.train()
    count = shape.micro_sequences
    prompts, responses = [[1] * shape.prompt_tokens] * count, [[1] * shape.new_tokens] * count
    mark("reference")
    reference = policy.response_logps(prompts, responses, reference=True)
    mark("forward")
    logps = policy.response_logps(prompts, responses)
    mark("backward")
    (logps - reference).sum().backward()  # any scalar of the log-probs: the backward is the model's
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)


def context_pass(policy: Any, context: Any, shape: StepShape) -> None:
    """The bandit's context of one batch of prompts (nothing when the context reads no model)."""
    if context is not None:
        context.vectors(policy, prompt_batch(shape.prompts, shape.prompt_tokens), [""] * shape.prompts)


def policy_trace(spec: ModelSpec, shape: StepShape, phases: tuple[str, ...] = POLICY_PHASES,
                 context: Any = None) -> Callable[[int], dict[str, int]]:
    """trace(depth): bytes of "weights", "state" (weights + LoRA + AdamW) and each phase's peak above it."""
    def trace(depth: int) -> dict[str, int]:
        model = meta_model(spec, depth)
        with fake_device() as live:
            model.to_empty(device="cpu")
            figures = {"weights": live.live}
            policy = traced_policy(model, shape.new_tokens, shape.temperature, shape.top_p)
            optimiser = adamw_with_state([p for p in model.parameters() if p.requires_grad])
            figures["state"] = live.live
            runs = {"context": lambda mark: context_pass(policy, context, shape),
                    "generation": lambda mark: generation(policy, shape.generate_prompts, shape.samples, shape, mark),
                    "update": lambda mark: update(policy, optimiser, shape, mark),
                    "evaluation": lambda mark: generation(policy, min(shape.eval_prompts, shape.prompts_per_generate or
                                                                         shape.eval_prompts), 1, shape, mark, greedy=True)}
            figures.update(measure_phases(live, {name: runs[name] for name in phases}))
        return figures

    return trace


def score_rm(rm: Any, model: torch.nn.Module, batch_size: int, max_length: int) -> None:
    """One scoring forward of `batch_size` items of `max_length` tokens through the RM adapter's code."""
    from laser.rewards.likelihood import LikelihoodRM

    rm.model, rm.tokenizer = model, SimpleNamespace(pad_token_id=0, padding_side="right")
    # `LazyHFModel.forward` without its token counter (an int of a fake tensor has no value)
    rm.forward = lambda model, input_ids, attention_mask: model(input_ids=input_ids, attention_mask=attention_mask)
    with torch.no_grad():
        if isinstance(rm, LikelihoodRM):  # its own scoring: response log-probs (+ a DPO RM's reference)
            rm.score_chunk([([1] * max_length, max_length // 2)] * batch_size)
        else:  # a classifier: its scoring is this forward (the rest is tokenising text)
            ids = torch.ones(batch_size, max_length, dtype=torch.long)
            rm.forward(model, ids, torch.ones_like(ids)).logits.float()


def rm_trace(spec: ModelSpec, rm: Any, batch_size: int, max_length: int) -> Callable[[int], dict[str, int]]:
    """trace(depth): an RM's "weights" (a DPO RM's reference included) and its "scoring" peak above them."""
    def trace(depth: int) -> dict[str, int]:
        models = [meta_model(spec, depth)] + [meta_model(s, depth) for s in spec.extra.values()]
        with fake_device() as live:
            for model in models:
                model.to_empty(device="cpu")
                model.eval()
                if model.config.pad_token_id is None:  # as `laser.hf.load_model` sets it (classifiers need it)
                    model.config.pad_token_id = 0
            if len(models) > 1:
                rm.reference = models[1]
            figures = {"weights": live.live}
            scoring = {"scoring": lambda mark: score_rm(rm, models[0], batch_size, max_length)}
            figures.update(measure_phases(live, scoring))
        return figures

    return trace
