"""The answer format (`task.answer_format`): the LASeR authors' prompt, strict extraction of its
"Final answer:" line on real rows, the "####" option, and the paper configs that use the authors' prompt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, REPO, require_data
from hydra.utils import instantiate

from laser.errors import LaserConfigError
from laser.tasks.answer_format import AUTHORS_PROMPT
from laser.tasks.base import Example
from laser.tasks.gsm8k import GSM8K
from laser.tasks.mmlu import MMLU
from laser.tasks.strategyqa import StrategyQA

# The authors' zero-shot CoT prompt as their code writes it, typed out here independently of the
# package; `{q}` is the question and the response follows "Solution: " (with its trailing space).
AUTHORS_TEXT = (
    "Your task is to answer the question below. Give step-by-step reasoning before you answer, and when you're "
    "ready to answer, please use the format `Final answer:...`.\nQuestion: {q}\nSolution: "
)
TASKS = {"gsm8k": GSM8K, "strategyqa": StrategyQA, "mmlu": MMLU}
SMALL = {"gsm8k": {}, "strategyqa": {}, "mmlu": {"subjects": ["anatomy"]}}  # MMLU: one subject loads fast


def _task(name: str, **options) -> GSM8K | StrategyQA | MMLU:
    """The task on its real rows from ../shared/data (skipped without them)."""
    return TASKS[name](data_dir=str(require_data(name)), **SMALL[name], **options)


def test_the_authors_prompt_is_verbatim_and_the_default() -> None:
    assert AUTHORS_PROMPT == AUTHORS_TEXT.replace("{q}", "{question}")
    for cls in TASKS.values():
        assert cls().prompt_template == AUTHORS_PROMPT and cls().answer_format == "final_answer"


# ----- strict reads the "Final answer:" line; flexible is the fallback ------------------------------


@pytest.mark.parametrize(
    ("task", "response", "strict"),
    [
        (GSM8K(), "Final answer: 72", "72"),
        (GSM8K(), "She pays 1,000 + 80 = $1,080.\nFinal answer: $1,080.", "1080"),
        (GSM8K(), "**Final answer:** 18 eggs (16 - 3 - 4 = 9, 9 * 2 = 18)", "18"),  # the first number
        (GSM8K(), "Final answer: -3.50", "-3.5"),
        (GSM8K(), "#### 72", None),  # the other format is not the graded one
        (GSM8K(), "The answer is 72.", None),
        (StrategyQA(), "Final answer: Yes.", "yes"),
        (StrategyQA(), "Albany, GA has 75,000 people.\nFinal answer: no", "no"),
        (MMLU(), "Final answer: (C)", "C"),
        (MMLU(), "Final answer: C", "C"),
        (MMLU(), "A and B are wrong.\nFinal answer: C. Paris", "C"),
    ],
)
def test_strict_reads_the_final_answer_line(task, response: str, strict: str | None) -> None:
    assert task.extract_strict(response) == strict
    assert type(task)(extraction="strict").extract_answer(response) == strict


def test_real_gsm8k_gold_rendered_as_final_answer_is_read_back_strictly() -> None:
    task = _task("gsm8k", extraction="strict")
    row = next(e for e in task.test_examples() if e.answer == "72")  # a real test row whose gold is 72
    assert task.extract_answer("Let me think.\nFinal answer: 72") == "72"
    assert task.is_correct(row.target, row) and row.target.endswith("\nFinal answer: 72")
    for example in task.test_examples()[:300]:
        assert task.extract_answer(example.target) == example.answer
        if example.answer.isdigit():  # as a model may write it: "$", thousands commas, a full stop
            assert task.extract_answer(f"So.\nFinal answer: ${int(example.answer):,}.") == example.answer


def test_without_final_answer_flexible_falls_back_on_a_real_row() -> None:
    strict, flexible = _task("gsm8k", extraction="strict"), _task("gsm8k")
    example = strict.test_examples()[0]  # Janet's ducks: 18
    response = example.target.rsplit("\n", 1)[0] + f" So she makes ${example.answer} a day."
    assert "Final answer" not in response
    assert strict.extract_answer(response) is None and flexible.extract_answer(response) == example.answer
    metrics = flexible.evaluate([response], [example])
    assert (metrics["test/accuracy_strict"], metrics["test/accuracy_flexible"]) == (0.0, 1.0)


@pytest.mark.parametrize("name", TASKS)
def test_real_targets_end_in_the_graded_format(name: str) -> None:
    """A warm-started policy learns the targets' last line: it must be what strict extraction reads."""
    for answer_format, marker in (("final_answer", "Final answer:"), ("hash", "####")):
        task = _task(name, extraction="strict", answer_format=answer_format)
        for example in task.train_examples()[:200] + task.test_examples()[:200]:
            assert example.target.endswith(f"{marker} {example.answer}")
            assert task.extract_answer(example.target) == example.answer


def test_mmlu_prompt_shows_the_choices_between_question_and_solution() -> None:
    task = _task("mmlu")
    example = task.test_examples()[0]
    choices = "".join(f"\n{letter}. {choice}" for letter, choice in zip("ABCD", example.meta["choices"], strict=True))
    assert task.format_prompt(example) == AUTHORS_TEXT.replace("{q}", example.meta["question"] + choices)


# ----- the "####" option ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hash_response", "gold"),
    [("gsm8k", "So 1,000 + 80.\n#### 1,080", "1080"), ("strategyqa", "Facts.\n#### yes", "yes"),
     ("mmlu", "B is wrong.\n#### C", "C")],
)
def test_hash_option_asks_for_and_reads_hash(name: str, hash_response: str, gold: str) -> None:
    task = TASKS[name](extraction="strict", answer_format="hash")
    prompt = task.format_prompt(Example("x", "Q?", gold))
    assert "####" in prompt and "Final answer" not in prompt
    assert task.extract_answer(hash_response) == gold
    assert task.extract_answer(f"Final answer: {gold}") is None  # strict reads only the chosen format
    assert TASKS[name](answer_format="hash").extract_answer(f"Final answer: {gold}") == gold  # flexible


def test_a_template_must_ask_for_its_format() -> None:
    with pytest.raises(LaserConfigError, match=r"task\.prompt_templates\.hash does not ask for '####'"):
        GSM8K(answer_format="hash", prompt_templates={"hash": "Q: {question}\nA:"})
    with pytest.raises(LaserConfigError, match=r"task\.answer_format='plain' is not one of"):
        StrategyQA(answer_format="plain")
    with pytest.raises(LaserConfigError, match=r"unknown answer format\(s\) \['boxed'\]"):
        MMLU(prompt_templates={"boxed": "{question} \\boxed{}"})
    with pytest.raises(LaserConfigError, match=r"task\.prompt_templates\.hash=None must be a string"):
        GSM8K(prompt_templates={"hash": None})


# ----- the paper configs use the authors' prompt ----------------------------------------------------


def test_reasoning_table_sweeps_the_three_reasoning_tasks() -> None:
    node = yaml.safe_load(Path(CONF_DIR, "experiment", "reasoning_table.yaml").read_text())
    assert node["hydra"]["sweeper"]["params"]["task"].split(",") == list(TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_reasoning_table_jobs_compose_the_authors_prompt(name: str, make_config) -> None:
    """Each task of the paper-scale table (`+experiment=reasoning_table task=<name>`) prompts with the
    authors' text and grades "Final answer:"."""
    data = require_data(name)
    extra = ["task.subjects=[anatomy]"] if name == "mmlu" else []
    cfg = make_config(["+experiment=reasoning_table", f"task={name}", f"task.data_dir={data}", *extra], tiny=False)
    assert cfg.task.answer_format == "final_answer"
    assert cfg.task.prompt_templates.final_answer == AUTHORS_TEXT.replace("{q}", "{question}")
    task = instantiate(cfg.task)
    example = task.test_examples()[0]
    assert task.format_prompt(example) == AUTHORS_TEXT.replace("{q}", example.question)
    assert task.extract_strict(f"Final answer: {example.answer}") == example.answer


def test_cfg_job_prints_the_authors_prompt() -> None:
    """`python -m laser.run +experiment=gsm8k --cfg job` shows the prompt the paper config uses."""
    done = subprocess.run([sys.executable, "-m", "laser.run", "+experiment=gsm8k", "--cfg", "job"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    task = yaml.safe_load(done.stdout)["task"]
    assert task["answer_format"] == "final_answer"
    assert task["prompt_templates"]["final_answer"] == AUTHORS_TEXT.replace("{q}", "{question}")
