"""StrategyQA: yes/no questions that need implicit multi-step reasoning (Geva et al., 2021)."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

from laser.errors import LaserConfigError
from laser.tasks.base import Example, Task
from laser.tasks.extraction import extract_strict_yes_no, extract_yes_no

_EXTRACTIONS = ("strict", "flexible")
_FILES = {"train": "train.json", "test": "dev.json"}  # the public test set has no labels: dev is our test
_TEST_SPLITS = ("test", "validation", "dev")  # what hub variants call their held-out split
_GOLDS = {"true": "yes", "yes": "yes", "false": "no", "no": "no"}


class StrategyQA(Task):
    """StrategyQA from a local folder (`train.json` 2,061 rows, `dev.json` 229 rows, the dev split
    serving as test) or from a hub id through `datasets.load_dataset`.

    Gold answers are "yes"/"no". The warm-start `target` is the row's facts followed by
    "Final answer: yes." (or no). Grading: "strict" reads the yes/no on the "Final answer:" line;
    "flexible" falls back to the last yes/no (or true/false) word; `evaluate` reports both. A hub
    source without both a train and a test split is split here, seeded, with `test_fraction` held
    out. `train_limit` / `test_limit` take seeded subsets; `num_fewshot` prepends solved training
    examples (drawn once with `seed`, never the prompt's own question) to every prompt.
    """

    name = "strategyqa"
    # Zero-shot chain of thought in the style of the GSM8K prompt; `{question}` is the only
    # placeholder (substituted literally, so templates may contain other braces).
    prompt_template: str = (
        "Question: {question}\n"
        "Answer: Let's think step by step. At the end, write 'Final answer: yes' or 'Final answer: no'.\n"
    )

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
        prompt_template: str | None = None,
    ) -> None:
        if extraction not in _EXTRACTIONS:
            raise LaserConfigError(f"task.extraction={extraction!r} is not one of {list(_EXTRACTIONS)}")
        for key, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise LaserConfigError(f"task.{key}={limit!r} must be a positive integer or null (all rows)")
        if isinstance(num_fewshot, bool) or not isinstance(num_fewshot, int) or num_fewshot < 0:
            raise LaserConfigError(f"task.num_fewshot={num_fewshot!r} must be a non-negative integer")
        is_number = isinstance(test_fraction, int | float) and not isinstance(test_fraction, bool)
        if not is_number or not 0 < test_fraction < 1:
            raise LaserConfigError(f"task.test_fraction={test_fraction!r} must be strictly between 0 and 1")
        if prompt_template is not None:
            if "{question}" not in prompt_template:
                raise LaserConfigError(
                    f"task.prompt_template={prompt_template!r} has no '{{question}}' placeholder"
                )
            self.prompt_template = prompt_template
        self.data_dir = data_dir
        self.hub_id = hub_id
        self.limits = {"train": train_limit, "test": test_limit}
        self.seed = seed
        self.test_fraction = float(test_fraction)
        self.num_fewshot = num_fewshot
        self.extraction = extraction
        self.skipped_rows = 0  # malformed rows dropped while loading
        self._full: dict[str, list[Example]] = {}  # both splits, before limits; loaded on first use
        self._cache: dict[str, list[Example]] = {}
        self._shots: list[Example] | None = None

    # ----- loading -----------------------------------------------------------------------------

    def train_examples(self) -> list[Example]:
        """Training questions (all, or a seeded subset of `train_limit`)."""
        return self._examples("train")

    def test_examples(self) -> list[Example]:
        """Held-out questions (the 229 dev rows locally, or a seeded subset of `test_limit`)."""
        return self._examples("test")

    def _examples(self, split: str) -> list[Example]:
        if split not in self._cache:
            full = self._load()[split]
            self._cache[split] = _seeded_subset(full, self.limits[split], f"{split}:{self.seed}")
        return self._cache[split]

    def _load(self) -> dict[str, list[Example]]:
        # Both splits at once, on first use: building the task (e.g. while composing configs) stays
        # free, and a hub source without a train split must be split as a whole anyway.
        if not self._full:
            self._full = self._read_local() if self.data_dir is not None else self._read_hub()
        return self._full

    def _read_local(self) -> dict[str, list[Example]]:
        from hydra.utils import to_absolute_path

        # Relative to the launch directory even if a Hydra job has changed the working directory.
        folder = Path(to_absolute_path(str(Path(self.data_dir).expanduser())))
        expected = "a folder with train.json and dev.json (JSON lists of rows with 'question', 'answer')"
        if not folder.is_dir():
            raise LaserConfigError(f"task.data_dir={str(folder)!r} does not exist; expected {expected}")
        loaded = {}
        for split, filename in _FILES.items():
            path = folder / filename
            if not path.is_file():
                raise LaserConfigError(
                    f"StrategyQA file {str(path)!r} is missing; task.data_dir must be {expected}"
                )
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise LaserConfigError(f"StrategyQA file {str(path)!r} is not valid JSON: {error}") from error
            if not isinstance(rows, list):
                raise LaserConfigError(f"StrategyQA file {str(path)!r} must hold a JSON list of rows")
            loaded[split] = self._parse_rows(split, str(path), rows)
        return loaded

    def _read_hub(self) -> dict[str, list[Example]]:
        try:
            import datasets

            splits = datasets.load_dataset(self.hub_id)
            names = list(splits.keys())
        except Exception as error:  # offline, unknown id, missing package: all end the same way
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise LaserConfigError(
                f"could not load the hub id {self.hub_id!r}: {reason}; "
                "offline, pass task.data_dir=../shared/data/strategyqa"
            ) from error
        held_out = next((name for name in _TEST_SPLITS if name in names), None)
        if "train" in names and held_out is not None:
            return {
                "train": self._parse_rows("train", f"{self.hub_id}:train", splits["train"]),
                "test": self._parse_rows("test", f"{self.hub_id}:{held_out}", splits[held_out]),
            }
        # No train/test pair (e.g. a single "test" split of all rows): split every row, seeded.
        pooled = [e for name in names for e in self._parse_rows(name, f"{self.hub_id}:{name}", splits[name])]
        order = list(range(len(pooled)))
        random.Random(f"strategyqa:split:{self.seed}").shuffle(order)
        n_test = max(1, round(len(pooled) * self.test_fraction)) if len(pooled) > 1 else 0
        test_ids = set(order[:n_test])
        return {
            "train": [e for i, e in enumerate(pooled) if i not in test_ids],
            "test": [e for i, e in enumerate(pooled) if i in test_ids],
        }

    def _parse_rows(self, split: str, source: str, rows) -> list[Example]:
        examples: list[Example] = []
        bad_rows: list[int] = []
        for number, row in enumerate(rows, start=1):
            example = _row_to_example(row, uid=f"strategyqa-{split}-{number - 1}", row_number=number)
            if example is None:
                bad_rows.append(number)
            else:
                examples.append(example)
        if bad_rows:
            self.skipped_rows += len(bad_rows)
            # One warning per file, not one per row: a broken file should not flood the log.
            warnings.warn(
                f"skipped {len(bad_rows)} malformed StrategyQA row(s) in {source} "
                f"(first at row {bad_rows[0]}): each row needs a non-empty string 'question' "
                "and a boolean (or yes/no) 'answer'",
                stacklevel=6,  # point at the caller of train_examples()/test_examples()
            )
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

    def extract_answer(self, response: str) -> str | None:
        """"yes"/"no" from the "Final answer:" line; with extraction="flexible", else the last yes/no word."""
        answer = extract_strict_yes_no(response)
        if answer is None and self.extraction == "flexible":
            answer = extract_yes_no(response)
        return answer

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """`test/accuracy` (with this task's extraction) plus `test/accuracy_strict` and
        `test/accuracy_flexible`, whichever extraction the task trains with."""
        metrics = super().evaluate(responses, examples)
        pairs = list(zip(responses, examples, strict=True))
        strict = [extract_strict_yes_no(r) == e.answer for r, e in pairs]
        flexible = [(extract_strict_yes_no(r) or extract_yes_no(r)) == e.answer for r, e in pairs]
        metrics["test/accuracy_strict"] = sum(strict) / max(len(pairs), 1)
        metrics["test/accuracy_flexible"] = sum(flexible) / max(len(pairs), 1)
        return metrics


def _row_to_example(row: object, uid: str, row_number: int) -> Example | None:
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
    target = f"{reasoning} Final answer: {gold}." if reasoning else f"Final answer: {gold}."
    meta = {"row": row_number, "qid": row.get("qid")}
    return Example(uid=uid, question=question.strip(), answer=gold, target=target, meta=meta)


def _seeded_subset(examples: list[Example], limit: int | None, key: str) -> list[Example]:
    """A seeded random subset of `limit` examples in their original order (all when `limit` is None)."""
    if limit is None or limit >= len(examples):
        return examples
    # A string seed is hashed deterministically by `random` (unlike hash()); the key names the split
    # so that train and test subsets are drawn independently.
    rng = random.Random(f"strategyqa:{key}")
    return [examples[i] for i in sorted(rng.sample(range(len(examples)), limit))]
