"""StrategyQA: yes/no questions that need implicit multi-step reasoning (Geva et al., 2021)."""

from __future__ import annotations

import random

from laser.tasks.answer_format import AUTHORS_PROMPT, STOP_STRINGS, choose_prompt, with_answer_line
from laser.tasks.base import Example, choose_stop_strings, strict_and_flexible_accuracy
from laser.tasks.extraction import extract_strict_yes_no, extract_yes_no
from laser.tasks.loading import (
    SplitTask,
    check_count,
    check_fraction,
    check_limit,
    check_one_of,
    load_hub_dataset,
    parse_rows,
    read_json_list,
    require_file,
    resolve_data_dir,
    seeded_split,
)

_EXTRACTIONS = ("strict", "flexible")
_FILES = {"train": "train.json", "test": "dev.json"}  # the public test set has no labels: dev is our test
_TEST_SPLITS = ("test", "validation", "dev")  # what hub variants call their held-out split
_GOLDS = {"true": "yes", "yes": "yes", "false": "no", "no": "no"}
_ROW_NEEDS = "a non-empty string 'question' and a boolean (or yes/no) 'answer'"


class StrategyQA(SplitTask):
    """StrategyQA from a local folder (`train.json` 2,061 rows, `dev.json` 229 rows, the dev split
    serving as test) or from a hub id through `datasets.load_dataset`.

    Gold answers are "yes"/"no". `answer_format` (see laser.tasks.answer_format) picks the prompt, the
    answer line strict grading reads and the last line of the warm-start `target` (the row's facts,
    then "Final answer: yes", or "#### yes" with answer_format "hash"). Grading: "strict" reads the
    yes/no on that line; "flexible" falls back to the last yes/no (or true/false) word; `evaluate`
    reports both. A hub
    source without both a train and a test split is split here, seeded, with `test_fraction` held
    out. `train_limit` / `test_limit` take seeded subsets; `num_fewshot` prepends solved training
    examples (drawn once with `seed`, never the prompt's own question) to every prompt.
    """

    name = "strategyqa"
    # One zero-shot chain-of-thought prompt per answer format; `{question}` is the only placeholder
    # (substituted literally, so templates may contain other braces).
    prompt_templates: dict[str, str] = {
        "final_answer": AUTHORS_PROMPT,
        "hash": "Question: {question}\nAnswer: Let's think step by step. At the end, write '#### yes' or "
                "'#### no'.\n",
    }

    def __init__(
        self,
        data_dir: str | None = None,
        hub_id: str = "ChilleD/StrategyQA",
        train_limit: int | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        test_fraction: float = 0.2,
        num_fewshot: int = 0,
        extraction: str = "flexible",
        answer_format: str = "final_answer",
        prompt_templates: dict[str, str] | None = None,
        stop_strings: list[str] | None = None,
    ) -> None:
        check_one_of("extraction", extraction, _EXTRACTIONS)
        check_limit("train_limit", train_limit)
        check_limit("test_limit", test_limit)
        check_count("num_fewshot", num_fewshot)
        check_fraction("test_fraction", test_fraction)
        self.prompt_template = choose_prompt(self.prompt_templates, prompt_templates, answer_format)
        self.answer_format = answer_format
        self.stop_strings = choose_stop_strings(stop_strings, STOP_STRINGS[answer_format])
        self.data_dir = data_dir
        self.hub_id = hub_id
        self.limits = {"train": train_limit, "test": test_limit}
        self.seed = seed
        self.test_fraction = float(test_fraction)
        self.num_fewshot = num_fewshot
        self.extraction = extraction
        self.skipped_rows = 0  # malformed rows dropped while loading
        self._full: dict[str, list[Example]] = {}  # both splits, before limits; loaded on first use
        self._shots: list[Example] | None = None

    # ----- loading -----------------------------------------------------------------------------

    def load_split(self, split: str) -> list[Example]:
        """Training questions, or the held-out ones (the 229 dev rows locally)."""
        return self._load()[split]

    def _load(self) -> dict[str, list[Example]]:
        # Both splits at once, on first use: building the task (e.g. while composing configs) stays
        # free, and a hub source without a train split must be split as a whole anyway.
        if not self._full:
            self._full = self._read_local() if self.data_dir is not None else self._read_hub()
        return self._full

    def _read_local(self) -> dict[str, list[Example]]:
        expected = "a folder with train.json and dev.json (JSON lists of rows with 'question', 'answer')"
        folder = resolve_data_dir(self.data_dir, expected)
        loaded = {}
        for split, filename in _FILES.items():
            path = require_file(folder / filename, "StrategyQA", expected)
            loaded[split] = self._parse_rows(split, str(path), read_json_list(path, "StrategyQA"))
        return loaded

    def _read_hub(self) -> dict[str, list[Example]]:
        hint = "offline, pass task.data_dir=../shared/data/strategyqa"
        splits = load_hub_dataset(self.hub_id, local_hint=hint, prepare=dict)
        held_out = next((name for name in _TEST_SPLITS if name in splits), None)
        if "train" in splits and held_out is not None:
            return {
                "train": self._parse_rows("train", f"{self.hub_id}:train", splits["train"]),
                "test": self._parse_rows("test", f"{self.hub_id}:{held_out}", splits[held_out]),
            }
        # No train/test pair (e.g. a single "test" split of all rows): split every row, seeded.
        pooled = [e for name in splits for e in self._parse_rows(name, f"{self.hub_id}:{name}", splits[name])]
        train, test = seeded_split(pooled, self.test_fraction, f"strategyqa:split:{self.seed}")
        return {"train": train, "test": test}

    def _parse_rows(self, split: str, source: str, rows) -> list[Example]:
        def example(index: int, number: int, row: object) -> Example | None:
            return _row_to_example(row, uid=f"strategyqa-{split}-{index}", row_number=number,
                                   answer_format=self.answer_format)

        examples, skipped = parse_rows(
            enumerate(rows, start=1), example, dataset="StrategyQA", source=source, needs=_ROW_NEEDS,
            stacklevel=7,  # point at the caller of train_examples()/test_examples()
        )
        self.skipped_rows += skipped
        return examples

    # ----- prompting and grading ---------------------------------------------------------------

    def format_prompt(self, example: Example) -> str:
        """The prompt template with the question filled in, after `num_fewshot` solved examples."""
        prompt = self.prompt_template.replace("{question}", example.question)
        if self.num_fewshot == 0:
            return prompt
        if self._shots is None:
            # One extra draw so a training prompt never shows its own solution as an example.
            pool = self._load()["train"]  # all training rows: the shots do not move with train_limit
            rng = random.Random(f"strategyqa:fewshot:{self.seed}")
            self._shots = rng.sample(pool, min(self.num_fewshot + 1, len(pool)))
        shots = [s for s in self._shots if s.uid != example.uid][: self.num_fewshot]
        template = self.prompt_template
        return "".join(template.replace("{question}", s.question) + s.target + "\n\n" for s in shots) + prompt

    def extract_strict(self, response: str) -> str | None:
        """"yes"/"no" from the "Final answer:" line (or, answer_format "hash", the "####" line)."""
        return extract_strict_yes_no(response, self.answer_format)

    def extract_flexible(self, response: str) -> str | None:
        """The last yes/no word."""
        return extract_yes_no(response)

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """`test/accuracy` (with this task's extraction) plus `test/accuracy_strict` and
        `test/accuracy_flexible`, whichever extraction the task trains with."""
        return super().evaluate(responses, examples) | strict_and_flexible_accuracy(
            responses, examples, self.extract_strict, self.extract_flexible)


def _row_to_example(row: object, uid: str, row_number: int, answer_format: str) -> Example | None:
    """An Example from one raw row, or None when the row is malformed."""
    if not isinstance(row, dict):
        return None
    question, answer, facts = row.get("question"), row.get("answer"), row.get("facts")
    if isinstance(answer, bool):
        answer = str(answer)
    gold = _GOLDS.get(answer.strip().lower()) if isinstance(answer, str) else None
    if not isinstance(question, str) or not question.strip() or gold is None:
        return None
    # Facts are only used for the warm-start target; hub variants store them as one string or omit them.
    facts = [facts] if isinstance(facts, str) else facts if facts is not None else []
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
        return None
    # Facts often lack a full stop ("Albany, GA has around 75,000 people"); add one so they read as sentences.
    reasoning = " ".join(f if f[-1] in ".!?" else f + "." for f in (f.strip() for f in facts) if f)
    target = with_answer_line(reasoning, answer_format, gold)  # "... sentences.\nFinal answer: yes"
    meta = {"row": row_number, "qid": row.get("qid")}
    return Example(uid=uid, question=question.strip(), answer=gold, target=target, meta=meta)

