"""Open-ended instruction following (LASeR's second setting): AlpacaEval, MT-Bench or WildChat prompts.

There is no gold answer: quality is a win rate against reference outputs under a pairwise judge
(`laser.judges`, `laser.winrate`). The paper trains on WildChat prompts and reports AlpacaEval win
rates; offline, AlpacaEval's 805 instructions (with gpt-4-1106-preview's reference outputs) and
MT-Bench's 80 questions are read from local files, split here into train and test (seeded).
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterable
from pathlib import Path

from laser.errors import LaserConfigError
from laser.judges import Judge
from laser.tasks.base import Example, Task
from laser.winrate import read_alpaca_eval_outputs, win_rate

SOURCES = ("alpaca_eval", "mt_bench", "wildchat")
_DEFAULT_FILES = {"alpaca_eval": "gpt4_1106_preview_outputs.json", "mt_bench": "question.jsonl"}
_DEFAULT_HUB = {"wildchat": "allenai/WildChat-1M"}
_ROW_NEEDS = {
    "alpaca_eval": "a non-empty string 'instruction' (and optional string 'output', 'dataset')",
    "mt_bench": "a non-empty list 'turns' of strings and a string 'category'",
    "wildchat": "a 'conversation' list whose first user turn has non-empty string 'content'",
}
_FILTERED = object()  # a well-formed row this task does not use (a non-English WildChat conversation)


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
    """

    name = "instructions"
    primary_metric = "test/win_rate"
    prompt_template: str = "### Instruction:\n{question}\n\n### Response:\n"

    def __init__(self, source: str = "alpaca_eval", data_file: str | None = None, data_dir: str | None = None,
                 hub_id: str | None = None, hub_split: str = "train", hub_max_rows: int | None = 100_000,
                 train_limit: int | None = None, test_limit: int | None = None, test_fraction: float = 0.2,
                 seed: int = 0, judge: Judge | None = None, reference: str | None = "dataset",
                 judge_both_orders: bool = True, prompt_template: str | None = None) -> None:
        if source not in SOURCES:
            raise LaserConfigError(f"task.source={source!r} is not one of {list(SOURCES)}")
        for key, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise LaserConfigError(f"task.{key}={limit!r} must be a positive integer or null (all rows)")
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) or not 0 < test_fraction < 1:
            raise LaserConfigError(f"task.test_fraction={test_fraction!r} must be strictly between 0 and 1")
        if judge is not None and not isinstance(judge, Judge):
            raise LaserConfigError(f"task.judge is a {type(judge).__name__}, expected a Judge (a `_target_`) or null")
        if prompt_template is not None:
            if "{question}" not in prompt_template:
                raise LaserConfigError(f"task.prompt_template={prompt_template!r} has no '{{question}}' placeholder")
            self.prompt_template = prompt_template
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
            order = list(range(len(examples)))
            random.Random(f"instructions:{self.source}:split:{self.seed}").shuffle(order)
            n_test = max(1, round(len(examples) * self.test_fraction)) if len(examples) > 1 else 0
            held_out = set(order[:n_test])
            for split, keep in (("train", lambda i: i not in held_out), ("test", lambda i: i in held_out)):
                chosen = [e for i, e in enumerate(examples) if keep(i)]
                self._splits[split] = _seeded_subset(chosen, self.limits[split], f"{self.source}:{split}:{self.seed}")
        return self._splits

    def _local_path(self) -> Path | None:
        from hydra.utils import to_absolute_path

        # Relative to the launch directory even if a Hydra job has changed the working directory.
        if self.data_file is not None:
            return Path(to_absolute_path(str(Path(self.data_file).expanduser())))
        if self.data_dir is not None:
            if self.source not in _DEFAULT_FILES:
                raise LaserConfigError(f"task.source={self.source} has no usual file name: pass task.data_file=")
            return Path(to_absolute_path(str(Path(self.data_dir).expanduser()))) / _DEFAULT_FILES[self.source]
        return None

    def _read_local(self) -> tuple[str, Iterable[tuple[int, object]]]:
        path = self._local_path()
        expected = f"a JSON list or JSON-lines file of {self.source} rows, each with {_ROW_NEEDS[self.source]}"
        if not path.is_file():
            raise LaserConfigError(f"{self.source} file {str(path)!r} does not exist; expected {expected}")
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as error:
                raise LaserConfigError(f"{self.source} file {str(path)!r} is not valid JSON: {error}") from error
            return str(path), enumerate(rows, start=1)
        return str(path), _json_lines(text)

    def _read_hub(self) -> tuple[str, Iterable[tuple[int, object]]]:
        try:
            import datasets

            # Streaming reads only the first `hub_max_rows` conversations, not all of WildChat-1M.
            stream = datasets.load_dataset(self.hub_id, split=self.hub_split, streaming=True)
            rows = list(stream.take(self.hub_max_rows) if self.hub_max_rows else stream)
        except Exception as error:  # offline, unknown or gated id, missing package: all end the same way
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise LaserConfigError(
                f"could not load the hub id {self.hub_id!r}: {reason}; offline, use the local sources "
                "task=alpaca_eval or task=mt_bench (files under ../shared/data), or task.data_file=<rows>"
            ) from error
        return f"{self.hub_id}:{self.hub_split}", enumerate(rows, start=1)

    def _parse_rows(self, source: str, rows: Iterable[tuple[int, object]]) -> list[Example]:
        examples: list[Example] = []
        bad_rows: list[int] = []
        seen: set[str] = set()
        for number, row in rows:
            fields = _row_fields(self.source, row)
            if fields is None:
                bad_rows.append(number)
            elif fields is not _FILTERED:
                question, reference, category, meta = fields
                if question in seen:
                    self.duplicate_rows += 1
                    continue
                seen.add(question)
                meta = {"row": number, "dataset_reference": reference, **meta}
                examples.append(Example(uid=f"{self.source}-{len(examples)}", question=question, answer="",
                                        target=reference, category=category, meta=meta))
        if bad_rows:
            self.skipped_rows += len(bad_rows)
            # One warning per file, not one per row: a broken file should not flood the log.
            warnings.warn(f"skipped {len(bad_rows)} malformed {self.source} row(s) in {source} (first at row "
                          f"{bad_rows[0]}): each row needs {_ROW_NEEDS[self.source]}", stacklevel=5)
        return examples

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


def _json_lines(text: str) -> Iterable[tuple[int, object]]:
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing newline) are not rows
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError:
            yield line_number, None  # counted as malformed


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


def _seeded_subset(examples: list[Example], limit: int | None, key: str) -> list[Example]:
    if limit is None or limit >= len(examples):
        return examples
    # A string seed is hashed deterministically by `random`; sorted indices keep the file's order.
    rng = random.Random(f"instructions:{key}")
    return [examples[i] for i in sorted(rng.sample(range(len(examples)), limit))]
