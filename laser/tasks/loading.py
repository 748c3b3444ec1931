"""What every dataset-backed task does the same way while it loads its rows.

Config checks with one-line errors, data paths relative to the launch directory, hub loading whose
failure says how to work offline, the malformed-row rule (skip, count, warn once per file) and
seeded subsets and splits. Each task module keeps only what is specific to its source (file layout,
hub id, row fields) and its answer format.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from laser.errors import LaserConfigError
from laser.tasks.base import Example, Task

T = TypeVar("T")

# ----- config checks: each raises a one-line LaserConfigError naming the `task.<key>` at fault -----


def check_one_of(key: str, value: object, options: Sequence[str]) -> None:
    """`value` must be one of `options` (e.g. task.extraction, task.source)."""
    if value not in options:
        raise LaserConfigError(f"task.{key}={value!r} is not one of {list(options)}")


def check_limit(key: str, limit: object) -> None:
    """A row limit: a positive integer, or None for all rows (bools are not integers here)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise LaserConfigError(f"task.{key}={limit!r} must be a positive integer or null (all rows)")


def check_count(key: str, value: object, most: int | None = None) -> None:
    """A count such as task.num_fewshot: an integer >= 0 (and <= `most` when given)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int or value < 0 or (most is not None and value > most):
        bound = "a non-negative integer" if most is None else f"an integer from 0 to {most}"
        raise LaserConfigError(f"task.{key}={value!r} must be {bound}")


def check_fraction(key: str, value: object) -> None:
    """A share of the rows (task.test_fraction, task.train_fraction): a number strictly in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise LaserConfigError(f"task.{key}={value!r} must be strictly between 0 and 1")


def check_prompt_template(template: str | None, key: str = "prompt_template") -> str | None:
    """`template` unchanged (None too, meaning the task's default) once it has a `{question}`; `key`
    names the knob in the error (`prompt_templates.hash` for a reasoning task's template)."""
    if template is not None and "{question}" not in template:
        raise LaserConfigError(f"task.{key}={template!r} has no '{{question}}' placeholder")
    return template


# ----- local files ----------------------------------------------------------------------------------


def resolve_path(path: str) -> Path:
    """`path` (with `~` expanded) made absolute against the launch directory, which is where the
    user typed it, even inside a Hydra job that has changed the working directory."""
    from hydra.utils import to_absolute_path  # imported on use, so importing a task module stays light

    return Path(to_absolute_path(str(Path(path).expanduser())))


def resolve_data_dir(data_dir: str, expected: str) -> Path:
    """`task.data_dir` resolved by `resolve_path`; it must be a folder (`expected` describes one)."""
    folder = resolve_path(data_dir)
    if not folder.is_dir():
        raise LaserConfigError(f"task.data_dir={str(folder)!r} does not exist; expected {expected}")
    return folder


def require_file(path: Path, label: str, expected: str) -> Path:
    """`path`, which must be a file of the data folder; `label` names the dataset ("GSM8K")."""
    if not path.is_file():
        raise LaserConfigError(f"{label} file {str(path)!r} is missing; task.data_dir must be {expected}")
    return path


def read_json_list(path: Path, label: str) -> list:
    """The rows of a file holding one JSON list; `label` names the dataset in the error messages."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LaserConfigError(f"{label} file {str(path)!r} is not valid JSON: {error}") from error
    if not isinstance(rows, list):
        kind = type(rows).__name__
        raise LaserConfigError(f"{label} file {str(path)!r} must hold a JSON list of rows, got a {kind}")
    return rows


def json_lines(lines: Iterable[str]) -> Iterator[tuple[int, object]]:
    """(line number from 1, parsed row) for each non-blank line of a JSON-lines file; a line that is
    not JSON gives the row None, so that `parse_rows` counts it as malformed."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing newline) are not rows
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError:
            yield number, None


# ----- the hub --------------------------------------------------------------------------------------


def load_hub_dataset(
    hub_id: str,
    config: str | None = None,
    *,
    local_hint: str,
    prepare: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """`datasets.load_dataset(hub_id, config, **kwargs)` (no config argument when `config` is None),
    passed through `prepare` (e.g. `dict`, or reading a stream) inside the same guard.

    Any failure (offline, unknown or gated id, `datasets` not installed, a stream breaking off)
    becomes one LaserConfigError line: the hub id, the first line of the reason, then `local_hint`,
    which says how to run offline ("offline, pass task.data_dir=../shared/data/gsm8k").
    """
    try:
        import datasets

        args = (hub_id,) if config is None else (hub_id, config)
        dataset = datasets.load_dataset(*args, **kwargs)
        return prepare(dataset) if prepare is not None else dataset
    except Exception as error:  # offline, unknown id, missing package: all end the same way
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        which = "" if config is None else f" (config {config!r})"
        message = f"could not load the hub id {hub_id!r}{which}: {reason}; {local_hint}"
        raise LaserConfigError(message) from error


# ----- rows -----------------------------------------------------------------------------------------


def parse_rows(
    rows: Iterable[tuple[int, object]],
    parse_row: Callable[[int, int, object], T | None],
    *,
    dataset: str,
    source: str,
    needs: str,
    unit: str = "row",
    stacklevel: int = 1,
) -> tuple[list[T], int]:
    """(parsed rows, how many were malformed) from (number, raw row) pairs of one file or split.

    `parse_row(index, number, row)` returns the parsed row or None when the row is malformed; `index`
    counts the rows from 0 (malformed ones too, so ids stay stable), `number` is where the row stands
    in `source` (a line or row number, in `unit`s). Malformed rows are skipped, and one warning names
    `source`, the first bad row and what a row `needs`: a broken file should not flood the log.
    `stacklevel` is warnings.warn's, counted from the caller of this function.
    """
    parsed: list[T] = []
    bad: list[int] = []
    for index, (number, row) in enumerate(rows):
        result = parse_row(index, number, row)
        if result is None:
            bad.append(number)
        else:
            parsed.append(result)
    if bad:
        warnings.warn(
            f"skipped {len(bad)} malformed {dataset} row(s) in {source} (first at {unit} {bad[0]}): "
            f"each row needs {needs}",
            stacklevel=stacklevel + 1,
        )
    return parsed, len(bad)


# ----- seeded subsets and splits --------------------------------------------------------------------


def seeded_subset(items: list[T], limit: int | None, key: str) -> list[T]:
    """`limit` items drawn at random, seeded by `key`, in their original order (`items` itself when
    `limit` is None or not smaller than it).

    `key` is a string ("gsm8k:train:0"): `random` hashes string seeds deterministically (unlike
    hash()), and naming the dataset and split in it keeps train and test subsets independent.
    """
    if limit is None or limit >= len(items):
        return items
    rng = random.Random(key)
    return [items[i] for i in sorted(rng.sample(range(len(items)), limit))]


def seeded_split(items: Sequence[T], test_fraction: float, key: str) -> tuple[list[T], list[T]]:
    """(train, test) for a source with one split: a shuffle seeded by `key` holds out
    round(len(items) * test_fraction) items (at least one, unless there is only one item); both
    parts keep the original order and never share an item."""
    order = list(range(len(items)))
    random.Random(key).shuffle(order)
    n_test = max(1, round(len(items) * test_fraction)) if len(items) > 1 else 0
    held_out = set(order[:n_test])
    train = [item for i, item in enumerate(items) if i not in held_out]
    test = [item for i, item in enumerate(items) if i in held_out]
    return train, test


class SplitTask(Task):
    """A task whose `train` and `test` splits load on first use (so building the task while composing
    configs stays free), each cut to a seeded subset of `self.limits[split]` and cached, so repeated
    calls return the same examples. Subclasses implement `load_split` and set `limits` and `seed`."""

    limits: dict[str, int | None]
    seed: int

    def train_examples(self) -> list[Example]:
        """The training split (all of it, or a seeded subset of `train_limit`)."""
        return self.split_examples("train")

    def test_examples(self) -> list[Example]:
        """The held-out split (all of it, or a seeded subset of `test_limit`)."""
        return self.split_examples("test")

    def split_examples(self, split: str) -> list[Example]:
        cache = self.__dict__.setdefault("_split_cache", {})
        if split not in cache:
            cache[split] = seeded_subset(self.load_split(split), self.limits[split], f"{self.name}:{split}:{self.seed}")
        return cache[split]

    def load_split(self, split: str) -> list[Example]:
        """Every example of `split` ("train" or "test"), before limits."""
        raise NotImplementedError

    def extract_answer(self, response: str) -> str | None:
        """The strict answer (the prompt's "final answer" format); with extraction="flexible", else
        the flexible one (lm-evaluation-harness's strict-match / flexible-extract)."""
        answer = self.extract_strict(response)
        if answer is None and getattr(self, "extraction", "strict") == "flexible":
            answer = self.extract_flexible(response)
        return answer

    def extract_strict(self, response: str) -> str | None:
        raise NotImplementedError

    def extract_flexible(self, response: str) -> str | None:
        raise NotImplementedError
