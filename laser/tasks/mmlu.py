"""MMLU: four-choice questions on 57 subjects, from school maths to law (Hendrycks et al., 2021)."""

from __future__ import annotations

import csv
import difflib
import random
from collections.abc import Iterable

from laser.errors import LaserConfigError
from laser.tasks.answer_format import AUTHORS_PROMPT, STOP_STRINGS, choose_prompt, with_answer_line
from laser.tasks.base import Example, choose_stop_strings, strict_and_flexible_accuracy
from laser.tasks.extraction import extract_choice_letter, extract_strict_choice
from laser.tasks.loading import (
    SplitTask,
    check_count,
    check_fraction,
    check_limit,
    check_one_of,
    load_hub_dataset,
    parse_rows,
    resolve_data_dir,
)

_EXTRACTIONS = ("strict", "flexible")
_LETTERS = "ABCD"
_HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
_ROW_NEEDS = "a question, four choices and an answer index 0-3 (or letter A-D)"


class MMLU(SplitTask):
    """MMLU from a local folder (`test/<subject>_test.csv`, 14,042 rows; `dev/<subject>_dev.csv`, five
    few-shot rows per subject) or from the hub id `cais/mmlu` (config "all").

    MMLU has no training split of its own questions, so training prompts are a seeded split of the
    test set: within each subject, `train_fraction` of the rows (shuffled with `seed`) train and the
    rest evaluate, so the two never share a question and every subject keeps its share in both (the
    hub's "auxiliary_train" holds other datasets' questions and is not used). `subjects` restricts
    both parts. `category` is the subject, so per-category accuracies are per-subject accuracies.
    Questions include the lettered choices ("A. ...") so reward models see them; golds are A-D.
    `answer_format` (see laser.tasks.answer_format) picks the prompt, the answer line strict grading
    reads ("Final answer: C" or "#### C") and the warm-start targets' last line. Grading and few-shot
    prompts: see `extract_answer` and `format_prompt`.
    """

    name = "mmlu"
    # One prompt per answer format; `{question}` (which includes the lettered choices) is the only
    # placeholder.
    prompt_templates: dict[str, str] = {
        "final_answer": AUTHORS_PROMPT,
        "hash": "Question: {question}\nAnswer: Think step by step, then end with '#### X' where X is A, B, C "
                "or D.\n",
    }

    def __init__(
        self,
        data_dir: str | None = None,
        hub_id: str = "cais/mmlu",
        hub_config: str = "all",
        subjects: list[str] | str | None = None,
        train_fraction: float = 0.5,
        train_limit: int | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        num_fewshot: int = 0,
        extraction: str = "flexible",
        answer_format: str = "final_answer",
        prompt_templates: dict[str, str] | None = None,
        stop_strings: list[str] | None = None,
    ) -> None:
        check_one_of("extraction", extraction, _EXTRACTIONS)
        check_limit("train_limit", train_limit)
        check_limit("test_limit", test_limit)
        check_count("num_fewshot", num_fewshot, most=5)  # the dev split has five rows per subject
        check_fraction("train_fraction", train_fraction)
        # A single name is allowed (task.subjects=anatomy); Hydra passes lists as a ListConfig.
        subjects = [subjects] if isinstance(subjects, str) else None if subjects is None else list(subjects)
        if subjects is not None and (not subjects or not all(isinstance(s, str) for s in subjects)):
            raise LaserConfigError(f"task.subjects={subjects!r} must be a list of subject names or null")
        self.prompt_template = choose_prompt(self.prompt_templates, prompt_templates, answer_format)
        self.answer_format = answer_format
        self.stop_strings = choose_stop_strings(stop_strings, STOP_STRINGS[answer_format])
        self.data_dir = data_dir
        self.hub_id, self.hub_config = hub_id, hub_config
        self.subjects = None if subjects is None else sorted(set(subjects))
        self.train_fraction = float(train_fraction)
        self.limits = {"train": train_limit, "test": test_limit}
        self.seed, self.num_fewshot, self.extraction = seed, num_fewshot, extraction
        self.skipped_rows = 0  # malformed rows dropped while loading
        self._raw: dict[str, dict[str, list[Example]]] = {}  # "test"/"dev" -> subject -> examples
        self._hub = None
        self._full: dict[str, list[Example]] = {}

    # ----- loading -----------------------------------------------------------------------------

    def load_split(self, split: str) -> list[Example]:
        """Training prompts: `train_fraction` of each subject's test rows; test: the other rows."""
        return self._split()[split]

    def _split(self) -> dict[str, list[Example]]:
        """The stratified train/evaluation split of the chosen subjects' test rows, built once."""
        if not self._full:
            by_subject = self._by_subject("test")
            chosen = self._check_subjects(sorted(by_subject))
            self._full = {"train": [], "test": []}
            for subject in chosen:
                rows = by_subject[subject]
                order = list(range(len(rows)))
                random.Random(f"mmlu:split:{self.seed}:{subject}").shuffle(order)
                in_train = set(order[: round(len(rows) * self.train_fraction)])
                self._full["train"] += [e for i, e in enumerate(rows) if i in in_train]
                self._full["test"] += [e for i, e in enumerate(rows) if i not in in_train]
            self.categories = tuple(chosen)
        return self._full

    def _check_subjects(self, available: list[str]) -> list[str]:
        if self.subjects is None:
            return available
        unknown = [s for s in self.subjects if s not in available]
        if unknown:
            close = difflib.get_close_matches(unknown[0], available, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise LaserConfigError(
                f"task.subjects has unknown MMLU subject(s) {unknown}{hint}; valid ones include "
                f"{available[:4]} ({len(available)} in all)"
            )
        return self.subjects

    def _by_subject(self, kind: str) -> dict[str, list[Example]]:
        """All rows of the "test" or "dev" split, grouped by subject (loaded on first use)."""
        if kind not in self._raw:
            self._raw[kind] = self._read_local(kind) if self.data_dir is not None else self._read_hub(kind)
        return self._raw[kind]

    def _read_local(self, kind: str) -> dict[str, list[Example]]:
        expected = "a folder with test/<subject>_test.csv and dev/<subject>_dev.csv"
        folder = resolve_data_dir(self.data_dir, expected)
        files = sorted((folder / kind).glob("*.csv"))
        if not files:
            raise LaserConfigError(f"no MMLU CSV files in {str(folder / kind)!r}; expected {expected}")
        by_subject: dict[str, list[Example]] = {}
        for path in files:
            subject = path.stem.removesuffix(f"_{kind}")
            try:
                with path.open(encoding="utf-8", newline="") as handle:
                    reader = csv.reader(handle)
                    # Blank lines are not rows; the header is optional (the original CSVs have none).
                    rows = [(reader.line_num, _csv_row(row)) for row in reader if row and row != _HEADER]
            except (UnicodeDecodeError, csv.Error) as error:
                raise LaserConfigError(f"MMLU file {str(path)!r} is not a readable CSV: {error}") from error
            numbered = ((line, (subject, row)) for line, row in rows)
            by_subject.update(self._parse_rows(kind, str(path), numbered))
        return by_subject

    def _read_hub(self, kind: str) -> dict[str, list[Example]]:
        if self._hub is None:  # one download serves both the test and the dev split
            self._hub = load_hub_dataset(self.hub_id, self.hub_config, prepare=dict,
                                         local_hint="offline, pass task.data_dir=../shared/data/mmlu")
        if kind not in self._hub:
            raise LaserConfigError(f"hub id {self.hub_id!r} has no {kind!r} split; it has {list(self._hub)}")

        def numbered() -> Iterable[tuple[int, tuple[str, object]]]:
            for number, row in enumerate(self._hub[kind], start=1):
                subject = row.get("subject") if isinstance(row, dict) else None
                yield number, (subject or self.hub_config, row)  # a one-subject config may lack the field

        return self._parse_rows(kind, f"{self.hub_id}:{kind}", numbered())

    def _parse_rows(self, kind: str, source: str, rows: Iterable[tuple[int, tuple]]) -> dict[str, list]:
        """Examples grouped by subject from (line, (subject, row)) pairs; malformed rows are counted."""
        seen: dict[str, int] = {}  # rows per subject so far, good or bad: uids stay stable

        def parse(_: int, line: int, subject_row: tuple[str, object]) -> Example | None:
            subject, row = subject_row
            index = seen[subject] = seen.get(subject, -1) + 1
            return _row_to_example(row, subject, uid=f"mmlu-{kind}-{subject}-{index}", line=line,
                                   answer_format=self.answer_format)

        examples, skipped = parse_rows(rows, parse, dataset="MMLU", source=source, needs=_ROW_NEEDS,
                                       unit="line", stacklevel=2)
        self.skipped_rows += skipped
        by_subject: dict[str, list[Example]] = {}
        for example in examples:  # `category` is the subject
            by_subject.setdefault(example.category, []).append(example)
        return by_subject

    # ----- prompting and grading ---------------------------------------------------------------

    def format_prompt(self, example: Example) -> str:
        """The prompt template with the question (and its choices) filled in, after the first
        `num_fewshot` dev rows of the same subject as solved examples (MMLU's k-shot convention)."""
        prompt = self.prompt_template.replace("{question}", example.question)
        if self.num_fewshot == 0:
            return prompt
        shots = self._by_subject("dev").get(example.category, [])[: self.num_fewshot]
        if len(shots) < self.num_fewshot:  # a silently shorter prompt would skew per-subject accuracy
            raise LaserConfigError(f"task.num_fewshot={self.num_fewshot} but MMLU's dev split has only "
                                   f"{len(shots)} row(s) for subject {example.category!r}")
        template = self.prompt_template
        return "".join(template.replace("{question}", s.question) + s.target + "\n\n" for s in shots) + prompt

    def extract_strict(self, response: str) -> str | None:
        """The letter on the "Final answer:" line (or, answer_format "hash", the "####" line)."""
        return extract_strict_choice(response, _LETTERS, self.answer_format)

    def extract_flexible(self, response: str) -> str | None:
        """The letter in "The answer is C", the last "(C)" or the last lone capital A-D."""
        return extract_choice_letter(response, _LETTERS)

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """`test/accuracy` (micro, over questions), `test/accuracy/<subject>`, `test/accuracy_macro`
        (the mean of the per-subject accuracies, as MMLU papers often report), and the micro
        `test/accuracy_strict` / `test/accuracy_flexible`, whichever extraction the task trains with."""
        metrics = super().evaluate(responses, examples)
        per_subject = [v for k, v in metrics.items() if k.startswith("test/accuracy/")]
        metrics["test/accuracy_macro"] = sum(per_subject) / max(len(per_subject), 1)
        return metrics | strict_and_flexible_accuracy(responses, examples, self.extract_strict,
                                                      self.extract_flexible)


def _csv_row(row: list[str]) -> dict | None:
    """A six-column CSV row as the hub's fields (question, choices, answer); None for other widths."""
    return {"question": row[0], "choices": row[1:5], "answer": row[5]} if len(row) == len(_HEADER) else None


def _row_to_example(row: object, subject: str, uid: str, line: int, answer_format: str) -> Example | None:
    """An Example from one row with `question`, `choices` (four strings) and `answer`, or None."""
    if not isinstance(row, dict):
        return None
    question, choices, index = row.get("question"), row.get("choices"), _answer_index(row.get("answer"))
    if not isinstance(question, str) or not question.strip() or index is None:
        return None
    if not isinstance(choices, list | tuple) or len(choices) != 4 or not all(isinstance(c, str) for c in choices):
        return None
    gold, choices, question = _LETTERS[index], [c.strip() for c in choices], question.strip()
    lettered = "".join(f"\n{letter}. {choice}" for letter, choice in zip(_LETTERS, choices, strict=True))
    # No worked solutions exist, so the warm-start target names the choice and ends in the strict format.
    target = with_answer_line(f"{gold}. {choices[index]}", answer_format, gold)
    meta = {"line": line, "question": question, "choices": choices}
    return Example(uid, question + lettered, answer=gold, target=target, category=subject, meta=meta)


def _answer_index(value: object) -> int | None:
    """0-3 from an index (this CSV format, the hub) or a letter A-D (the original CSVs); else None."""
    text = str(value).strip().upper() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    index = _LETTERS.find(text) if len(text) == 1 and text.isalpha() else int(text) if text.isdigit() else -1
    return index if 0 <= index < len(_LETTERS) else None
