"""Long-context question answering, scored by token F1 (LongBench; HotpotQA distractor offline).

The paper's third setting: no training, best-of-n answer selection on long passages (see
`laser.bestofn`). Two sources give the same kind of Example:

- `hotpotqa`: HotpotQA dev, distractor setting, from a local `dev_distractor.json` (7,405 questions,
  10 titled Wikipedia paragraphs each, 2 of them gold). The paragraphs are joined, in file order, into
  one passage "Title: <title>\\n<sentences>"; this is the source LongBench's HotpotQA task is built from.
- `longbench`: `THUDM/LongBench` from the Hugging Face hub, one or more `subsets` (hotpotqa,
  2wikimqa, musique, narrativeqa, qasper, multifieldqa_en, ...), fields `input`, `context`, `answers`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from laser.errors import LaserConfigError
from laser.tasks.base import Example, Task, choose_stop_strings
from laser.tasks.loading import (
    check_count,
    check_limit,
    check_one_of,
    load_hub_dataset,
    parse_rows,
    read_json_list,
    require_file,
    resolve_data_dir,
    seeded_subset,
)
from laser.tasks.qa_metrics import best_f1, exact_match

SOURCES = ("hotpotqa", "longbench")
HOTPOTQA_FILE = "dev_distractor.json"
_PLACEHOLDER = re.compile(r"\{(context|input)\}")
_LONGBENCH_ANSWER = " Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"
_ROW_NEEDS = "a question, a passage and at least one gold answer"


class LongContextQA(Task):
    """Open-ended QA over a long passage; an answer is scored by its best token F1 against the golds.

    `Example.question` is the full prompt (passage + question in LongBench's wording), `answer` the
    first gold answer, `meta["answers"]` all of them, `meta["passage"]` / `meta["question"]` the raw
    parts (for programmatic RMs), `category` the subset ("hotpotqa" for the local source).

    Args:
        source: "hotpotqa" (local `data_dir` with dev_distractor.json) or "longbench" (hub).
        data_dir: folder holding dev_distractor.json (source=hotpotqa).
        hub_id, subsets: the LongBench hub dataset and which of its subsets to load (split "test").
        limit: a seeded random subset of this many questions per subset (None: all).
        train_limit: questions per subset drawn from the rows NOT in the test subset, only for a
            locally built policy's tokenizer and warm start (best-of-n never trains); 0 = none.
        seed: seeds both subsets (same seed, same rows).
        prompt_template: overrides the LongBench prompt for every subset ({context} and {input}).
        first_line: grade only the first non-empty line of a response (a base model keeps writing).
        stop_strings: where answers end besides EOS (None: "Question:", the next block of every prompt).
    """

    # LongBench's prompts (dataset2prompt.json). Multi-document QA (hotpotqa, 2wikimqa, musique) uses
    # `prompt_template`; the instruction is repeated after the passage because a long passage pushes
    # the first copy far from where the answer starts. "asconcisely" is LongBench's own spelling.
    prompt_template: str = (
        "Answer the question based on the given passages. Only give me the answer and do not output any "
        "other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the "
        "given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"
    )
    subset_prompts: dict[str, str] = {
        "narrativeqa": (
            "You are given a story, which can be either a novel or a movie script, and a question. Answer the "
            "question asconcisely as you can, using a single phrase if possible. Do not provide any explanation."
            "\n\nStory: {context}\n\nNow, answer the question based on the story asconcisely as you can, using "
            "a single phrase if possible." + _LONGBENCH_ANSWER
        ),
        "qasper": (
            "You are given a scientific article and a question. Answer the question as concisely as you can, "
            "using a single phrase or sentence if possible. If the question cannot be answered based on the "
            "information in the article, write \"unanswerable\". If the question is a yes/no question, answer "
            "\"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nArticle: {context}\n\n "
            "Answer the question based on the above article as concisely as you can, using a single phrase or "
            "sentence if possible. If the question cannot be answered based on the information in the article, "
            "write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or "
            "\"unanswerable\"." + _LONGBENCH_ANSWER
        ),
        "multifieldqa_en": (
            "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question "
            "based on the above text, only give me the answer and do not output any other words.\n\n"
            "Question: {input}\nAnswer:"
        ),
    }
    primary_metric = "test/f1"
    stop_strings: tuple[str, ...] = ("Question:",)  # every prompt ends "Question: ...Answer:"; the next block

    def __init__(
        self,
        source: str = "hotpotqa",
        data_dir: str | None = None,
        hub_id: str = "THUDM/LongBench",
        subsets: Sequence[str] = ("hotpotqa",),
        limit: int | None = None,
        train_limit: int = 0,
        seed: int = 0,
        prompt_template: str | None = None,
        first_line: bool = True,
        stop_strings: list[str] | None = None,
    ) -> None:
        check_one_of("source", source, SOURCES)
        if source == "hotpotqa" and not data_dir:
            raise LaserConfigError("task.source=hotpotqa reads a local dev_distractor.json: pass "
                                   "task.data_dir=../shared/data/hotpotqa (or task=longbench for the hub)")
        check_limit("limit", limit)
        check_count("train_limit", train_limit)  # 0: no training rows
        subsets = [str(s) for s in ([subsets] if isinstance(subsets, str) else subsets)]
        if source == "longbench" and not subsets:
            raise LaserConfigError("task.subsets is empty: name LongBench subsets, e.g. [hotpotqa, musique]")
        if prompt_template is not None:
            if "{context}" not in prompt_template or "{input}" not in prompt_template:
                raise LaserConfigError(f"task.prompt_template={prompt_template!r} needs both {{context}} and {{input}}")
            self.prompt_template = prompt_template
            self.subset_prompts = {}  # one explicit template replaces LongBench's per-subset ones
        self.source = source
        self.name = source
        self.data_dir, self.hub_id = data_dir, hub_id
        self.subsets = ["hotpotqa"] if source == "hotpotqa" else subsets
        self.categories = tuple(self.subsets)
        self.limit, self.train_limit, self.seed = limit, train_limit, seed
        self.first_line = first_line
        self.stop_strings = choose_stop_strings(stop_strings, self.stop_strings)
        self.skipped_rows = 0
        self._rows: dict[str, list[Example]] = {}  # every parsed row per subset, loaded once
        self._test_indices: dict[str, list[int]] = {}

    # ----- loading -----------------------------------------------------------------------------

    def test_examples(self) -> list[Example]:
        """The evaluation questions: per subset, all rows or a seeded subset of `limit`."""
        return [self._subset_rows(s)[i] for s in self.subsets for i in self._test_subset(s)]

    def train_examples(self) -> list[Example]:
        """Up to `train_limit` rows per subset that are not test rows (for a tiny policy's tokenizer and
        warm start only); [] by default."""
        if self.train_limit == 0:
            return []
        examples = []
        for subset in self.subsets:
            held_out = set(self._test_subset(subset))
            rest = [i for i in range(len(self._subset_rows(subset))) if i not in held_out]
            chosen = seeded_subset(rest, self.train_limit, f"longcontext:train:{subset}:{self.seed}")
            examples.extend(self._subset_rows(subset)[i] for i in chosen)
        return examples

    def _test_subset(self, subset: str) -> list[int]:
        if subset not in self._test_indices:
            indices = list(range(len(self._subset_rows(subset))))
            key = f"longcontext:test:{subset}:{self.seed}"
            self._test_indices[subset] = seeded_subset(indices, self.limit, key)
        return self._test_indices[subset]

    def _subset_rows(self, subset: str) -> list[Example]:
        if subset not in self._rows:
            rows = self._read_hotpotqa() if self.source == "hotpotqa" else self._read_longbench(subset)
            self._rows[subset] = self._parse(subset, rows)
        return self._rows[subset]

    def _read_hotpotqa(self) -> Iterable[tuple[int, object]]:
        expected = f"a folder with {HOTPOTQA_FILE}"
        path = require_file(resolve_data_dir(self.data_dir, expected) / HOTPOTQA_FILE, "HotpotQA", expected)
        return enumerate(read_json_list(path, "HotpotQA"))

    def _read_longbench(self, subset: str) -> Iterable[tuple[int, object]]:
        hint = "offline, use the local HotpotQA source: task=hotpotqa task.data_dir=../shared/data/hotpotqa"
        return enumerate(load_hub_dataset(self.hub_id, subset, split="test", local_hint=hint))

    def _parse(self, subset: str, rows: Iterable[tuple[int, object]]) -> list[Example]:
        parse = _hotpotqa_row if self.source == "hotpotqa" else _longbench_row

        def example(_: int, number: int, row: object) -> Example | None:
            parts = parse(row)
            if parts is None:
                return None
            uid, question, passage, answers, meta = parts
            return Example(uid=f"{subset}-{uid or number}", question=self._prompt(subset, passage, question),
                           answer=answers[0], target=answers[0], category=subset,
                           meta={"answers": answers, "passage": passage, "question": question, **meta})

        examples, skipped = parse_rows(rows, example, dataset=self.source, source=f"subset {subset!r}",
                                       needs=_ROW_NEEDS, stacklevel=4)
        self.skipped_rows += skipped
        return examples

    def _prompt(self, subset: str, passage: str, question: str) -> str:
        template = self.subset_prompts.get(subset, self.prompt_template)
        # One pass, so braces inside the passage are never taken for placeholders.
        return _PLACEHOLDER.sub(lambda m: passage if m.group(1) == "context" else question, template)

    # ----- prompting and grading ---------------------------------------------------------------

    def format_prompt(self, example: Example) -> str:
        """The prompt is built at load time (it holds the passage): `Example.question` as it is."""
        return example.question

    def extract_answer(self, response: str) -> str:
        """The response's first non-empty line (or all of it with first_line=False), stripped."""
        text = response.strip()
        if self.first_line:
            text = text.split("\n", 1)[0].strip()
        return text

    def f1(self, response: str, example: Example) -> float:
        """The answer's best token F1 against the example's gold answers."""
        return best_f1(self.extract_answer(response), gold_answers(example))

    def is_correct(self, response: str, example: Example) -> bool:
        """Exact match after normalisation with any gold answer."""
        return exact_match(self.extract_answer(response), gold_answers(example))

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """`test/f1`, `test/f1/<subset>` and `test/exact_match`, averaged over the examples."""
        pairs = list(zip(responses, examples, strict=True))
        scores = [self.f1(r, e) for r, e in pairs]
        metrics = {"test/f1": sum(scores) / max(len(scores), 1),
                   "test/exact_match": sum(self.is_correct(r, e) for r, e in pairs) / max(len(pairs), 1)}
        for subset in sorted({e.category for e in examples}):
            own = [s for s, e in zip(scores, examples, strict=True) if e.category == subset]
            metrics[f"test/f1/{subset}"] = sum(own) / len(own)
        return metrics


def gold_answers(example: Example) -> list[str]:
    """All gold answers of an example (`meta["answers"]`, else its single `answer`)."""
    return list(example.meta.get("answers") or [example.answer])


def hotpotqa_passage(paragraphs: list) -> str:
    """The 10 titled paragraphs as one passage, in file order: "Title: <title>\\n<sentences>" each."""
    # HotpotQA's sentences keep their leading spaces, so joining them with "" restores the paragraph.
    return "\n\n".join(f"Title: {title}\n{''.join(sentences).strip()}" for title, sentences in paragraphs)


def _hotpotqa_row(row: object) -> tuple | None:
    """(uid, question, passage, answers, meta) from a dev_distractor.json row, or None if malformed."""
    if not isinstance(row, dict):
        return None
    question, answer, context = row.get("question"), row.get("answer"), row.get("context")
    if not (isinstance(question, str) and question.strip() and isinstance(answer, str) and answer.strip()):
        return None
    valid = isinstance(context, list) and context and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], list)
        and all(isinstance(s, str) for s in p[1]) for p in context)
    if not valid:
        return None
    meta = {"type": row.get("type", ""), "level": row.get("level", "")}
    return str(row.get("_id") or ""), question.strip(), hotpotqa_passage(context), [answer.strip()], meta


def _longbench_row(row: object) -> tuple | None:
    """(uid, question, passage, answers, meta) from a LongBench row, or None if malformed."""
    if not isinstance(row, dict):
        return None
    question, passage, answers = row.get("input"), row.get("context"), row.get("answers")
    if not (isinstance(question, str) and question.strip() and isinstance(passage, str) and passage.strip()):
        return None
    if not isinstance(answers, list):
        return None
    answers = [a.strip() for a in answers if isinstance(a, str) and a.strip()]
    if not answers:
        return None
    return str(row.get("_id") or ""), question.strip(), passage, answers, {"length": row.get("length")}
