"""GSM8K: grade-school maths word problems with a numeric final answer (Cobbe et al., 2021)."""

from __future__ import annotations

import json
import random
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

from laser.errors import LaserConfigError
from laser.tasks.base import Example, Task
from laser.tasks.extraction import extract_last_number, extract_strict_gsm8k, normalise_number

_EXTRACTIONS = ("strict", "flexible")
_SPLITS = {"train": "train.jsonl", "test": "test.jsonl"}
_CALCULATOR_RE = re.compile(r"<<[^>]*>>")


class GSM8K(Task):
    """GSM8K from a local folder of `train.jsonl` / `test.jsonl` or from the Hugging Face hub.

    Gold answers are the number after "#### ", normalised ("1,080" -> "1080"). Grading follows
    lm-evaluation-harness: "strict" reads only "#### N"; "flexible" falls back to the last number in
    the response. `evaluate` reports both variants whichever one `extraction` picks for training.
    `train_limit` / `test_limit` take a seeded random subset (same seed, same subset), which is how
    the quick configs stay fast.
    """

    name = "gsm8k"
    # Zero-shot chain of thought in the LASeR authors' style; `{question}` is the only placeholder
    # (substituted literally, so templates may contain other braces).
    prompt_template: str = (
        "Question: {question}\n"
        "Answer: Let's think step by step. At the end, write the final answer as '#### <number>'.\n"
    )

    def __init__(
        self,
        data_dir: str | None = None,
        hub_id: str = "openai/gsm8k",
        hub_config: str = "main",
        train_limit: int | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        extraction: str = "flexible",
        prompt_template: str | None = None,
    ) -> None:
        if extraction not in _EXTRACTIONS:
            raise LaserConfigError(f"task.extraction={extraction!r} is not one of {list(_EXTRACTIONS)}")
        for key, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise LaserConfigError(f"task.{key}={limit!r} must be a positive integer or null (all rows)")
        if prompt_template is not None:
            if "{question}" not in prompt_template:
                raise LaserConfigError(
                    f"task.prompt_template={prompt_template!r} has no '{{question}}' placeholder"
                )
            self.prompt_template = prompt_template
        self.data_dir = data_dir
        self.hub_id = hub_id
        self.hub_config = hub_config
        self.limits = {"train": train_limit, "test": test_limit}
        self.seed = seed
        self.extraction = extraction
        self.skipped_rows = 0  # malformed rows dropped while loading, summed over the loaded splits
        self._cache: dict[str, list[Example]] = {}

    # ----- loading -----------------------------------------------------------------------------

    def train_examples(self) -> list[Example]:
        """Training problems (all 7,473, or a seeded subset of `train_limit`)."""
        return self._examples("train")

    def test_examples(self) -> list[Example]:
        """Test problems (all 1,319, or a seeded subset of `test_limit`)."""
        return self._examples("test")

    def _examples(self, split: str) -> list[Example]:
        # Loaded on first use and cached: building the task object (e.g. while composing configs)
        # stays free, and repeated calls return the same subset.
        if split not in self._cache:
            source, rows = self._read_local(split) if self.data_dir is not None else self._read_hub(split)
            examples = self._parse_rows(split, source, rows)
            self._cache[split] = self._subset(split, examples)
        return self._cache[split]

    def _read_local(self, split: str) -> tuple[str, Iterable[tuple[int, object]]]:
        from hydra.utils import to_absolute_path

        # Relative to the launch directory even if a Hydra job has changed the working directory.
        folder = Path(to_absolute_path(str(Path(self.data_dir).expanduser())))
        expected = f"a folder with {' and '.join(_SPLITS.values())} (JSON lines with 'question', 'answer')"
        if not folder.is_dir():
            raise LaserConfigError(f"task.data_dir={str(folder)!r} does not exist; expected {expected}")
        path = folder / _SPLITS[split]
        if not path.is_file():
            raise LaserConfigError(f"GSM8K file {str(path)!r} is missing; task.data_dir must be {expected}")

        def rows() -> Iterable[tuple[int, object]]:
            with path.open(encoding="utf-8") as handle:
                for line_number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue  # blank lines (e.g. a trailing newline) are not rows
                    try:
                        yield line_number, json.loads(line)
                    except json.JSONDecodeError:
                        yield line_number, None  # counted as malformed by _parse_rows

        return str(path), rows()

    def _read_hub(self, split: str) -> tuple[str, Iterable[tuple[int, object]]]:
        try:
            import datasets

            dataset = datasets.load_dataset(self.hub_id, self.hub_config, split=split)
        except Exception as error:  # offline, unknown id, missing package: all end the same way
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise LaserConfigError(
                f"could not load the hub id {self.hub_id!r} (config {self.hub_config!r}): {reason}; "
                "offline, pass task.data_dir=../shared/data/gsm8k"
            ) from error
        return f"{self.hub_id}:{split}", enumerate(dataset, start=1)

    def _parse_rows(self, split: str, source: str, rows: Iterable[tuple[int, object]]) -> list[Example]:
        examples: list[Example] = []
        bad_lines: list[int] = []
        for index, (line_number, row) in enumerate(rows):
            example = _row_to_example(row, uid=f"gsm8k-{split}-{index}", line_number=line_number)
            if example is None:
                bad_lines.append(line_number)
            else:
                examples.append(example)
        if bad_lines:
            self.skipped_rows += len(bad_lines)
            # One warning per file, not one per row: a broken file should not flood the log.
            warnings.warn(
                f"skipped {len(bad_lines)} malformed GSM8K row(s) in {source} (first at line {bad_lines[0]}): "
                "each row needs string fields 'question' and 'answer' with a '#### <number>' final answer",
                stacklevel=4,  # point at the caller of train_examples()/test_examples()
            )
        return examples

    def _subset(self, split: str, examples: list[Example]) -> list[Example]:
        limit = self.limits[split]
        if limit is None or limit >= len(examples):
            return examples
        # A string seed is hashed deterministically by `random` (unlike hash()), and naming the split
        # keeps the train and test subsets independent. Sorted indices keep the file's order.
        rng = random.Random(f"gsm8k:{split}:{self.seed}")
        return [examples[i] for i in sorted(rng.sample(range(len(examples)), limit))]

    # ----- prompting and grading ---------------------------------------------------------------

    def format_prompt(self, example: Example) -> str:
        """The prompt template with the question filled in."""
        return self.prompt_template.replace("{question}", example.question)

    def extract_answer(self, response: str) -> str | None:
        """The "#### N" answer; with extraction="flexible", else the last number in the response."""
        answer = extract_strict_gsm8k(response)
        if answer is None and self.extraction == "flexible":
            answer = extract_last_number(response)
        return answer

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """`test/accuracy` (with this task's extraction) plus `test/accuracy_strict` and
        `test/accuracy_flexible`, the two lm-evaluation-harness variants, for comparison with papers."""
        metrics = super().evaluate(responses, examples)
        pairs = list(zip(responses, examples, strict=True))
        strict = [extract_strict_gsm8k(r) == e.answer for r, e in pairs]
        flexible = [(extract_strict_gsm8k(r) or extract_last_number(r)) == e.answer for r, e in pairs]
        metrics["test/accuracy_strict"] = sum(strict) / max(len(pairs), 1)
        metrics["test/accuracy_flexible"] = sum(flexible) / max(len(pairs), 1)
        return metrics


def _row_to_example(row: object, uid: str, line_number: int) -> Example | None:
    """An Example from one raw row, or None when the row is malformed."""
    if not isinstance(row, dict):
        return None
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str) or "####" not in answer:
        return None
    solution, _, final = answer.rpartition("####")
    gold = normalise_number(final)
    if gold is None or not question.strip():
        return None
    # The supervised target drops the <<48/2=24>> calculator annotations (the policy has no
    # calculator) and restates the final line in normalised form, so strict extraction reads the gold.
    reasoning = _CALCULATOR_RE.sub("", solution).rstrip()
    target = f"{reasoning}\n#### {gold}" if reasoning else f"#### {gold}"
    return Example(uid=uid, question=question.strip(), answer=gold, target=target, meta={"line": line_number})
