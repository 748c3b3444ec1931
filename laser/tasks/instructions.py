"""Open-ended instruction following (LASeR's second setting): AlpacaEval, MT-Bench or WildChat prompts.

There is no gold answer: quality is a win rate against reference outputs under a pairwise judge
(`laser.tasks.win_rate`; judges built from RMs and LMs: `laser.evaluation.judges`). The paper trains
on WildChat prompts and reports AlpacaEval win rates; offline, AlpacaEval's 805 instructions (with
gpt-4-1106-preview's reference outputs) and MT-Bench's 80 questions are read from local files, split
here into train and test (seeded).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from laser.errors import LaserConfigError
from laser.tasks.base import Example, Task, choose_stop_strings
from laser.tasks.loading import (
    check_fraction,
    check_limit,
    check_one_of,
    check_prompt_template,
    json_lines,
    load_hub_dataset,
    parse_rows,
    read_json_list,
    resolve_path,
    seeded_split,
    seeded_subset,
)
from laser.tasks.win_rate import Judge, read_alpaca_eval_outputs, win_rate

SOURCES = ("alpaca_eval", "mt_bench", "wildchat")
_DEFAULT_FILES = {"alpaca_eval": "gpt4_1106_preview_outputs.json", "mt_bench": "question.jsonl"}
_DEFAULT_HUB = {"wildchat": "allenai/WildChat-1M"}
_ROW_NEEDS = {
    "alpaca_eval": "a non-empty string 'instruction' (and optional string 'output', 'dataset')",
    "mt_bench": "a non-empty list 'turns' of strings and a string 'category'",
    "wildchat": "a 'conversation' list whose first user turn has non-empty string 'content'",
}
_FILTERED = object()  # a well-formed row not used: a non-English WildChat one, a repeated instruction


class Instructions(Task):
    """Instruction prompts from `source` ("alpaca_eval", "mt_bench" or "wildchat").

    Examples: `question` = the instruction (MT-Bench: the first turn), `answer` = "" (no gold),
    `target` = the source's reference output when it has one (AlpacaEval; used by warm starts),
    `category` = AlpacaEval's `dataset` field / MT-Bench's category, `meta["reference"]` = the output
    the win rate is measured against ("" when there is none).

    Args:
        source: which benchmark the rows come from (also the task's `name`).
        data_file: a local JSON list or JSON-lines file; `data_dir`: a folder holding the source's
            usual file (`gpt4_1106_preview_outputs.json`, `question.jsonl`). Without either, rows
            come from `hub_id` (WildChat: allenai/WildChat-1M, English first user turns, the first
            `hub_max_rows` conversations streamed).
        train_limit, test_limit: seeded subsets (null: all); test_fraction: the share held out for
            testing (these sources have one split; the split is seeded and never shares an instruction).
        judge: compares responses with references in `evaluate` (None: no win rate).
        reference: "dataset" (the source's reference outputs), "none", or the path of an AlpacaEval
            `model_outputs.json` whose outputs become the references (matched by instruction).
        judge_both_orders: judge (response, reference) and (reference, response), cancelling position bias.
        stop_strings: where responses end besides EOS (None: the template's next "### Instruction:").
    """

    name = "instructions"
    primary_metric = "test/win_rate"
    prompt_template: str = "### Instruction:\n{question}\n\n### Response:\n"
    # The template's next block, colon included: 19 of AlpacaEval's reference outputs have "### Instructions:" headers
    stop_strings: tuple[str, ...] = ("### Instruction:",)

    def __init__(self, source: str = "alpaca_eval", data_file: str | None = None, data_dir: str | None = None,
                 hub_id: str | None = None, hub_split: str = "train", hub_max_rows: int | None = 100_000,
                 train_limit: int | None = None, test_limit: int | None = None, test_fraction: float = 0.2,
                 seed: int = 0, judge: Judge | None = None, reference: str | None = "dataset",
                 judge_both_orders: bool = True, prompt_template: str | None = None,
                 stop_strings: list[str] | None = None) -> None:
        check_one_of("source", source, SOURCES)
        check_limit("train_limit", train_limit)
        check_limit("test_limit", test_limit)
        check_fraction("test_fraction", test_fraction)
        if judge is not None and not isinstance(judge, Judge):
            raise LaserConfigError(f"task.judge is a {type(judge).__name__}, expected a Judge (a `_target_`) or null")
        self.prompt_template = check_prompt_template(prompt_template) or self.prompt_template
        self.stop_strings = choose_stop_strings(stop_strings, self.stop_strings)
        self.name = self.source = source
        self.data_file, self.data_dir = data_file, data_dir
        self.hub_id = hub_id or _DEFAULT_HUB.get(source)
        if data_file is None and data_dir is None and self.hub_id is None:
            raise LaserConfigError(f"task.source={source} has no hub default: pass task.data_file=<path> "
                                   f"(e.g. ../shared/data/{source}/{_DEFAULT_FILES[source]})")
        self.hub_split, self.hub_max_rows = hub_split, hub_max_rows
        self.limits = {"train": train_limit, "test": test_limit}
        self.test_fraction, self.seed = float(test_fraction), seed
        self.judge, self.reference, self.judge_both_orders = judge, reference, judge_both_orders
        self.skipped_rows = 0  # malformed rows dropped while loading
        self.duplicate_rows = 0  # repeated instructions dropped (so train and test never share one)
        self._splits: dict[str, list[Example]] = {}

    # ----- loading -----------------------------------------------------------------------------

    def train_examples(self) -> list[Example]:
        """Training instructions (the seeded 1 - test_fraction share, or `train_limit` of them)."""
        return self._load()["train"]

    def test_examples(self) -> list[Example]:
        """Held-out instructions (the seeded test_fraction share, or `test_limit` of them)."""
        return self._load()["test"]

    def _load(self) -> dict[str, list[Example]]:
        # On first use: building the task (e.g. while composing configs) stays free.
        if not self._splits:
            source, rows = self._read_local() if self._local_path() else self._read_hub()
            examples = self._with_references(self._parse_rows(source, rows))
            key = f"instructions:{self.source}"
            train, test = seeded_split(examples, self.test_fraction, f"{key}:split:{self.seed}")
            for split, chosen in (("train", train), ("test", test)):
                self._splits[split] = seeded_subset(chosen, self.limits[split], f"{key}:{split}:{self.seed}")
        return self._splits

    def _local_path(self) -> Path | None:
        if self.data_file is not None:
            return resolve_path(self.data_file)
        if self.data_dir is not None:
            if self.source not in _DEFAULT_FILES:
                raise LaserConfigError(f"task.source={self.source} has no usual file name: pass task.data_file=")
            return resolve_path(self.data_dir) / _DEFAULT_FILES[self.source]
        return None

    def _read_local(self) -> tuple[str, Iterable[tuple[int, object]]]:
        path = self._local_path()
        expected = f"a JSON list or JSON-lines file of {self.source} rows, each with {_ROW_NEEDS[self.source]}"
        if not path.is_file():
            raise LaserConfigError(f"{self.source} file {str(path)!r} does not exist; expected {expected}")
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):  # a JSON list (read again there: small files, one set of errors)
            return str(path), enumerate(read_json_list(path, self.source), start=1)
        return str(path), json_lines(text.splitlines())

    def _read_hub(self) -> tuple[str, Iterable[tuple[int, object]]]:
        # Streaming reads only the first `hub_max_rows` conversations, not all of WildChat-1M.
        rows = load_hub_dataset(
            self.hub_id, split=self.hub_split, streaming=True,
            prepare=lambda stream: list(stream.take(self.hub_max_rows) if self.hub_max_rows else stream),
            local_hint="offline, use the local sources task=alpaca_eval or task=mt_bench (files under "
                       "../shared/data), or task.data_file=<rows>",
        )
        return f"{self.hub_id}:{self.hub_split}", enumerate(rows, start=1)

    def _parse_rows(self, source: str, rows: Iterable[tuple[int, object]]) -> list[Example]:
        seen: set[str] = set()

        def example(_: int, number: int, row: object) -> Example | object | None:
            fields = _row_fields(self.source, row)
            if fields is None or fields is _FILTERED:
                return fields
            question, reference, category, meta = fields
            if question in seen:
                self.duplicate_rows += 1
                return _FILTERED
            seen.add(question)
            meta = {"row": number, "dataset_reference": reference, **meta}
            return Example(uid=f"{self.source}-{len(seen) - 1}", question=question, answer="", target=reference,
                           category=category, meta=meta)

        parsed, skipped = parse_rows(rows, example, dataset=self.source, source=source,
                                     needs=_ROW_NEEDS[self.source], stacklevel=5)
        self.skipped_rows += skipped
        return [e for e in parsed if e is not _FILTERED]

    def _with_references(self, examples: list[Example]) -> list[Example]:
        """Set `meta["reference"]` from the dataset, nothing, or an outputs file (by instruction)."""
        if self.reference in (None, "none"):
            outputs: dict[str, str] = {}
        elif self.reference == "dataset":
            outputs = {e.question: e.meta["dataset_reference"] for e in examples}
        else:
            outputs = {row["instruction"]: row["output"] for row in read_alpaca_eval_outputs(self.reference)}
        for example in examples:
            example.meta["reference"] = outputs.get(example.question, "")
        return examples

    # ----- prompting and grading ---------------------------------------------------------------

    def format_prompt(self, example: Example) -> str:
        """The instruction in the prompt template."""
        return self.prompt_template.replace("{question}", example.question)

    def extract_answer(self, response: str) -> str | None:
        """The whole response, stripped (open-ended answers have no final-answer line)."""
        return response.strip()

    def is_correct(self, response: str, example: Example) -> bool:
        """Always False: instructions have no gold answer (gold-based RMs and metrics do not apply)."""
        return False

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """`test/mean_length` (characters per stripped response) always. With a judge and references:
        the win rate of the responses over the references (`test/win_rate`, ties count half),
        `test/win_rate_se`, `test/wins`, `test/ties`, `test/losses`, and `test/win_rate/<category>`.
        Without a judge, or when no example has a reference (MT-Bench, WildChat), only the length."""
        texts = [r.strip() for r in responses]
        metrics = {"test/mean_length": sum(map(len, texts)) / max(len(texts), 1)}
        judged = [(t, e) for t, e in zip(texts, examples, strict=True) if e.meta.get("reference")]
        if self.judge is None or not judged:
            return metrics
        result = win_rate([e.question for _, e in judged], [t for t, _ in judged],
                          [e.meta["reference"] for _, e in judged], self.judge, both_orders=self.judge_both_orders)
        metrics.update({"test/win_rate": result.rate, "test/win_rate_se": result.se, "test/wins": float(result.wins),
                        "test/ties": float(result.ties), "test/losses": float(result.losses)})
        for category in sorted({e.category for _, e in judged if e.category}):
            scores = [s for s, (_, e) in zip(result.scores, judged, strict=True) if e.category == category]
            metrics[f"test/win_rate/{category}"] = sum(scores) / len(scores)
        return metrics


def write_alpaca_eval_outputs(path: str | Path, responses: list[str], examples: list[Example],
                              generator: str) -> Path:
    """Write AlpacaEval's `model_outputs.json` (a list of {"instruction", "output", "generator",
    "dataset"}) so the official `alpaca_eval` tool can judge the responses (where an API key exists)."""
    rows = [{"instruction": e.question, "output": r, "generator": generator, "dataset": e.category}
            for r, e in zip(responses, examples, strict=True)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# Also reachable from the task object, so evaluation code holding only `task` can write the file.
Instructions.write_alpaca_eval_outputs = staticmethod(write_alpaca_eval_outputs)


def _row_fields(source: str, row: object) -> tuple[str, str, str, dict] | object | None:
    """(question, reference, category, extra meta) of a row; `_FILTERED` for a row not used; None if malformed."""
    if not isinstance(row, dict):
        return None
    if source == "alpaca_eval":
        question, output, category = row.get("instruction"), row.get("output", ""), row.get("dataset", "")
        if not isinstance(question, str) or not question.strip() or not isinstance(output, str):
            return None
        return question.strip(), output.strip(), category if isinstance(category, str) else "", {}
    if source == "mt_bench":
        turns, category = row.get("turns"), row.get("category")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns) \
                or not turns[0].strip() or not isinstance(category, str):
            return None
        grading = row.get("reference") if isinstance(row.get("reference"), list) else []
        # MT-Bench's "reference" answers are grading keys for math/reasoning/coding, not baseline outputs.
        meta = {"turns": turns, "question_id": row.get("question_id"), "grading_reference": grading[:1]}
        return turns[0].strip(), "", category, meta
    conversation = row.get("conversation")
    if not isinstance(conversation, list):
        return None
    if row.get("language", "English") != "English":
        return _FILTERED  # the paper uses English conversations only
    first = next((t for t in conversation if isinstance(t, dict) and t.get("role") == "user"), None)
    content = first.get("content") if first else None
    if not isinstance(content, str) or not content.strip():
        return None
    return content.strip(), "", "", {"conversation_hash": row.get("conversation_hash")}
