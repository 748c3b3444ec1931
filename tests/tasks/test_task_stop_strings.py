"""Each task's stop strings (`Task.stop_strings`, `task.stop_strings` in yaml): a response followed by the
next block of the task's prompt is cut where that block starts, and no gold response is ever cut."""

from __future__ import annotations

import pytest
from conftest import DATA_DIR, REPO, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from laser.errors import LaserConfigError
from laser.policy.stopping import first_stop
from laser.tasks.arithmetic import Arithmetic
from laser.tasks.gsm8k import GSM8K
from laser.tasks.instructions import Instructions
from laser.tasks.longcontext import LongContextQA
from laser.tasks.mmlu import MMLU
from laser.tasks.strategyqa import StrategyQA

SEPARATORS = ("\n", "\n\n", " ")  # how a model that writes on might start the next block


def assert_no_prompt_begins_a_stop(task, example) -> None:
    """Hugging Face matches stop strings across the prompt's end: no prompt may end with a stop's beginning."""
    prompt = task.format_prompt(example)
    assert not any(prompt.endswith(stop[:i]) for stop in task.stop_strings for i in range(1, len(stop))), prompt


def assert_cut_where_the_next_prompt_starts(task, examples) -> None:
    """Gold responses hold no stop string; a gold response followed by the next example's prompt is cut
    at the end of the response (give or take the separator)."""
    for example, following in zip(examples, examples[1:] + examples[:1], strict=True):
        assert_no_prompt_begins_a_stop(task, example)
        response = example.target or example.answer
        assert first_stop(response, task.stop_strings) is None, (task.name, response)
        for separator in SEPARATORS:
            written_on = response + separator + task.format_prompt(following)
            assert first_stop(written_on, task.stop_strings) == len(response + separator), (task.name, written_on)


def test_arithmetic_stops_at_its_next_question():
    task = Arithmetic()
    assert task.stop_strings == ("\nQ:",)
    examples = task.test_examples()[:50]
    for example, following in zip(examples, examples[1:], strict=False):
        assert_no_prompt_begins_a_stop(task, example)
        response = example.target
        assert first_stop(response, task.stop_strings) is None
        written_on = response + "\n" + task.format_prompt(following)
        assert first_stop(written_on, task.stop_strings) == len(response)


def test_the_reasoning_stops_follow_the_answer_format_and_yaml_overrides_them():
    assert GSM8K().stop_strings == ("Question:", "Your task is to answer the question below")
    assert GSM8K(answer_format="hash").stop_strings == StrategyQA(answer_format="hash").stop_strings == ("Question:",)
    assert GSM8K(stop_strings=[]).stop_strings == () and MMLU(stop_strings=["\n\n\n"]).stop_strings == ("\n\n\n",)
    with pytest.raises(LaserConfigError, match="task.stop_strings="):
        StrategyQA(stop_strings="Question:")


def test_every_task_yaml_has_the_knob_and_null_means_the_task_default():
    for path in sorted((REPO / "conf" / "task").glob("*.yaml")):
        node = OmegaConf.load(path)
        if "defaults" in node:  # arithmetic_legacy: arithmetic's, with other categories
            continue
        assert "stop_strings" in node and node.stop_strings is None, path.name
    alpaca = instantiate(compose_config(["task=alpaca_eval"]).task)
    assert alpaca.stop_strings == Instructions.stop_strings == ("### Instruction:",)
    assert instantiate(OmegaConf.load(REPO / "conf" / "task" / "arithmetic.yaml")).stop_strings == ("\nQ:",)


def _data(name: str, marker: str):
    folder = DATA_DIR / name
    if not (folder / marker).exists():
        pytest.skip(f"real {name} data not found at {folder} (copy it there to run these tests)")
    return folder


@pytest.mark.parametrize("answer_format", ["final_answer", "hash"])
def test_reasoning_responses_end_where_the_next_prompt_starts(answer_format):
    gsm8k = GSM8K(data_dir=str(_data("gsm8k", "test.jsonl")), answer_format=answer_format)
    strategyqa = StrategyQA(data_dir=str(_data("strategyqa", "dev.json")), answer_format=answer_format)
    mmlu = MMLU(data_dir=str(_data("mmlu", "test")), answer_format=answer_format, train_limit=200, test_limit=200)
    for task in (gsm8k, strategyqa, mmlu):
        assert_cut_where_the_next_prompt_starts(task, task.train_examples()[:300] + task.test_examples()[:300])


def test_instruction_responses_end_at_the_next_instruction_and_no_reference_is_cut():
    """AlpacaEval's reference outputs use "### Instructions:" headers (19 of 805): the stop has its colon."""
    task = Instructions(source="alpaca_eval",
                        data_file=str(_data("alpaca_eval", "gpt4_1106_preview_outputs.json") /
                                      "gpt4_1106_preview_outputs.json"))
    examples = task.train_examples() + task.test_examples()
    assert sum("### Instructions" in e.target for e in examples) >= 1
    assert_cut_where_the_next_prompt_starts(task, examples)


def test_long_context_answers_end_at_the_next_question():
    task = LongContextQA(source="hotpotqa", data_dir=str(_data("hotpotqa", "dev_distractor.json")), limit=50)
    for example in task.test_examples():
        assert_no_prompt_begins_a_stop(task, example)
        answer = example.answer
        assert first_stop(answer, task.stop_strings) is None
        written_on = f"{answer}\n\nQuestion: {example.meta['question']}\nAnswer:"
        assert first_stop(written_on, task.stop_strings) == len(answer) + 2
