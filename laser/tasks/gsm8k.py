"""GSM8K: grade-school maths word problems with a numeric final answer (Cobbe et al., 2021)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from laser.tasks.answer_format import AUTHORS_PROMPT, STOP_STRINGS, choose_prompt, with_answer_line
from laser.tasks.base import Example, choose_stop_strings, strict_and_flexible_accuracy
from laser.tasks.extraction import extract_last_number, extract_strict_number, normalise_number
from laser.tasks.loading import (
    SplitTask,
    check_limit,
    check_one_of,
    json_lines,
    load_hub_dataset,
    parse_rows,
    require_file,
    resolve_data_dir,
)

_EXTRACTIONS = ("strict", "flexible")
_SPLITS = {"train": "train.jsonl", "test": "test.jsonl"}
_CALCULATOR_RE = re.compile(r"<<[^>]*>>")
_ROW_NEEDS = "string fields 'question' and 'answer' with a '#### <number>' final answer"


class GSM8K(SplitTask):
    """GSM8K from a local folder of `train.jsonl` / `test.jsonl` or from the Hugging Face hub.

    Gold answers are the number after the rows' "#### ", normalised ("1,080" -> "1080").
    `answer_format` (see laser.tasks.answer_format) picks the prompt, the answer line strict grading
    reads and the warm-start targets' last line: "final_answer" (the LASeR authors' prompt; strict
    reads the first number after "Final answer:") or "hash" (strict reads "#### N", as
    lm-evaluation-harness does). "flexible" falls back to the last number in the response; `evaluate`
    reports both variants whichever one `extraction` picks for training.
    `train_limit` / `test_limit` take a seeded random subset (same seed, same subset), which is how
    the quick configs stay fast.
    """

    name = "gsm8k"
    # One zero-shot chain-of-thought prompt per answer format; `{question}` is the only placeholder
    # (substituted literally, so templates may contain other braces).
    prompt_templates: dict[str, str] = {
        "final_answer": AUTHORS_PROMPT,
        "hash": "Question: {question}\nAnswer: Let's think step by step. At the end, write the final answer "
                "as '#### <number>'.\n",
    }

    def __init__(
        self,
        data_dir: str | None = None,
        hub_id: str = "openai/gsm8k",
        hub_config: str = "main",
        train_limit: int | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        extraction: str = "flexible",
        answer_format: str = "final_answer",
        prompt_templates: dict[str, str] | None = None,
        stop_strings: list[str] | None = None,
    ) -> None:
        check_one_of("extraction", extraction, _EXTRACTIONS)
        check_limit("train_limit", train_limit)
        check_limit("test_limit", test_limit)
        self.prompt_template = choose_prompt(self.prompt_templates, prompt_templates, answer_format)
        self.answer_format = answer_format
        self.stop_strings = choose_stop_strings(stop_strings, STOP_STRINGS[answer_format])
        self.data_dir = data_dir
        self.hub_id = hub_id
        self.hub_config = hub_config
        self.limits = {"train": train_limit, "test": test_limit}
        self.seed = seed
        self.extraction = extraction
        self.skipped_rows = 0  # malformed rows dropped while loading, summed over the loaded splits

    # ----- loading -----------------------------------------------------------------------------

    def load_split(self, split: str) -> list[Example]:
        """All problems of a split (7,473 train, 1,319 test), malformed rows skipped and counted."""
        source, rows = self._read_local(split) if self.data_dir is not None else self._read_hub(split)

        def example(index: int, line: int, row: object) -> Example | None:
            return _row_to_example(row, uid=f"gsm8k-{split}-{index}", line_number=line,
                                   answer_format=self.answer_format)

        examples, skipped = parse_rows(
            rows, example, dataset="GSM8K", source=source, needs=_ROW_NEEDS, unit="line",
            stacklevel=4,  # point at the caller of train_examples()/test_examples()
        )
        self.skipped_rows += skipped
        return examples

    def _read_local(self, split: str) -> tuple[str, Iterable[tuple[int, object]]]:
        expected = f"a folder with {' and '.join(_SPLITS.values())} (JSON lines with 'question', 'answer')"
        folder = resolve_data_dir(self.data_dir, expected)
        path = require_file(folder / _SPLITS[split], "GSM8K", expected)
        with path.open(encoding="utf-8") as handle:
            return str(path), list(json_lines(handle))

    def _read_hub(self, split: str) -> tuple[str, Iterable[tuple[int, object]]]:
        dataset = load_hub_dataset(self.hub_id, self.hub_config, split=split,
                                   local_hint="offline, pass task.data_dir=../shared/data/gsm8k")
        return f"{self.hub_id}:{split}", enumerate(dataset, start=1)

    # ----- prompting and grading ---------------------------------------------------------------

    def format_prompt(self, example: Example) -> str:
        """The prompt template with the question filled in."""
        return self.prompt_template.replace("{question}", example.question)

    def extract_strict(self, response: str) -> str | None:
        """The number on the "Final answer:" line (or, answer_format "hash", after "####")."""
        return extract_strict_number(response, self.answer_format)

    def extract_flexible(self, response: str) -> str | None:
        """The last number in the response."""
        return extract_last_number(response)

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """`test/accuracy` (with this task's extraction) plus `test/accuracy_strict` and
        `test/accuracy_flexible`, the two lm-evaluation-harness variants, for comparison with papers."""
        return super().evaluate(responses, examples) | strict_and_flexible_accuracy(
            responses, examples, self.extract_strict, self.extract_flexible)


def _row_to_example(row: object, uid: str, line_number: int, answer_format: str) -> Example | None:
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
    # calculator) and ends with the gold in the graded format ("Final answer: 72" or "#### 72").
    reasoning = _CALCULATOR_RE.sub("", solution).rstrip()
    target = with_answer_line(reasoning, answer_format, gold)
    return Example(uid=uid, question=question.strip(), answer=gold, target=target, meta={"line": line_number})
