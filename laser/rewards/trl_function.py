"""A reward function written for TRL's `GRPOTrainer` as an arm, unchanged.

    answer_match:
      _target_: laser.rewards.trl_function.TRLRewardFunction
      function: laser.rewards.reward_functions.answer_match     # any importable `package.module.function`

TRL calls a reward function as `f(prompts=..., completions=..., **columns)` and takes a list with one
float, or None ("not applicable"), per completion (`GRPOTrainer._calculate_rewards`; a coroutine
function is awaited). Here `prompts` are the policy's prompts and `completions` its responses (strings;
`conversational: true` passes TRL's conversational form, `[{"role": "user", "content": question}]` and
`[{"role": "assistant", "content": response}]`); the dataset columns are the examples' fields (`answer`,
`question`, `target`, `category`, `uid`) and their `meta` keys, plus any renamed in `columns` (TRL's
`accuracy_reward` reads `solution`: `columns: {solution: answer}`). A function that takes no `**kwargs`
gets only the arguments it names; one that requires an argument laser does not have is refused when
the pool is built. None becomes NaN, a fault of that step (as TRL makes it NaN), counted in
`not_applicable`.

Cost per call: whatever the function costs (a rule: microseconds per response); it runs in-process.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.errors import RewardOutputError

FIELDS = ("answer", "question", "target", "category", "uid")  # Example fields passed as dataset columns


def import_function(path: str) -> Callable[..., Any]:
    """The callable at `package.module.function` (or `package.module:function`); one-line error if not."""
    module_name, _, attribute = str(path).replace(":", ".").rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise LaserConfigError(f"function={path!r} cannot be imported ({type(error).__name__}: {error}); give "
                               "an importable package.module.function") from None
    if not callable(function):
        raise LaserConfigError(f"function={path!r} is a {type(function).__name__}, not a function")
    return function


class TRLRewardFunction(RewardModel):
    """An arm that calls a TRL-style reward function on the batch.

    Args:
        function: import path of the function (or the function itself, from Python).
        columns: extra columns named as the function expects them: {its name: an Example field or meta key}.
        conversational: pass prompts and completions in TRL's conversational (messages) form.
    """

    text_only = False  # its columns are the examples' fields (gold answers), which a remote request lacks

    def __init__(self, function: str | Callable[..., Any], columns: Mapping[str, str] | None = None,
                 conversational: bool = False) -> None:
        super().__init__()
        self.function_path = function if isinstance(function, str) else getattr(function, "__qualname__", "?")
        self._function = None if isinstance(function, str) else function
        self.columns = {str(name): str(source) for name, source in (columns or {}).items()}
        self.conversational = bool(conversational)
        self.not_applicable = 0  # None scores so far (each made its step a fault)

    @property
    def function(self) -> Callable[..., Any]:
        """The reward function, imported on first use."""
        if self._function is None:
            self._function = import_function(self.function_path)
        return self._function

    def check(self) -> None:
        """The function imports and asks for nothing but prompts, completions and columns laser has."""
        known = {"prompts", "completions", *FIELDS, *self.columns}
        parameters = inspect.signature(self.function).parameters.values()
        required = [p.name for p in parameters if p.default is inspect.Parameter.empty
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        missing = [name for name in required if name not in known]
        if missing:
            raise LaserConfigError(f"function={self.function_path!r} requires {missing}, which laser does not pass; it "
                                   f"passes {sorted(known)} and the examples' meta keys (rename with columns: "
                                   "{name: field})")

    def arguments(self, batch: ScoringBatch) -> dict[str, Any]:
        """The keyword arguments TRL would pass: prompts, completions and the dataset columns."""
        if self.conversational:
            prompts: list[Any] = [[{"role": "user", "content": q}] for q in batch.rm_prompts()]
            completions: list[Any] = [[{"role": "assistant", "content": r}] for r in batch.responses]
        else:
            prompts, completions = list(batch.prompts), list(batch.responses)
        examples = batch.examples
        columns = {field: [getattr(e, field) for e in examples] for field in FIELDS}
        shared_meta = set.intersection(*(set(e.meta) for e in examples)) if examples else set()
        columns.update({key: [e.meta[key] for e in examples] for key in sorted(shared_meta - set(FIELDS))})
        for name, source in self.columns.items():
            if source not in columns:
                raise LaserConfigError(f"columns.{name}={source!r} is not an example field {list(FIELDS)} or a "
                                       f"meta key of every example ({sorted(shared_meta)})")
            columns[name] = columns[source]
        arguments = {"prompts": prompts, "completions": completions, **columns}
        parameters = inspect.signature(self.function).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return arguments
        names = {p.name for p in parameters}
        return {key: value for key, value in arguments.items() if key in names}

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """The function's rewards as float32 (None: NaN); a coroutine function is run to completion."""
        result = self.function(**self.arguments(batch))
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        if isinstance(result, torch.Tensor):
            result = result.tolist()
        if not isinstance(result, list | tuple):
            raise TypeError(f"{self.function_path} returned a {type(result).__name__}, expected a list of floats")
        if len(result) != len(batch):
            raise RewardOutputError(self.name, f"({self.function_path}) returned {len(result)} rewards for "
                                               f"{len(batch)} completions")
        self.not_applicable += sum(value is None for value in result)
        return torch.tensor([math.nan if value is None else float(value) for value in result], dtype=torch.float32)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
