"""Prompt batches per iteration: `steps_per_iteration: null` is one pass over the training set (per process
share of the global batch), an explicit number wins, and each task of the paper's reasoning table gets
its own pass."""

from __future__ import annotations

import itertools

import pytest
from conftest import DATA_DIR, compose_config

from laser.config.instantiate import instantiate
from laser.errors import LaserConfigError
from laser.step.data import PromptDataModule, one_pass_steps
from laser.tasks.base import Example, Task


class Numbered(Task):
    """`size` training prompts q0, q1, ... (one test prompt)."""

    name = "numbered"

    def __init__(self, size: int) -> None:
        self.examples = [Example(f"q{i}", f"q{i}", "0") for i in range(size)]

    def train_examples(self) -> list[Example]:
        return self.examples

    def test_examples(self) -> list[Example]:
        return self.examples[:1]

    def format_prompt(self, example: Example) -> str:
        return example.question

    def extract_answer(self, response: str) -> str | None:
        return None


def test_one_pass_is_the_training_set_over_the_global_batch_rounded_up():
    assert one_pass_steps(7473, 16) == 468  # 467.06: the last, short batch still counts
    assert one_pass_steps(7473, 16, world_size=2) == 234
    assert one_pass_steps(64, 16) == 4 and one_pass_steps(64, 16, world_size=4) == 1
    assert one_pass_steps(3, 16) == 1


def test_null_steps_train_on_every_prompt_once_per_iteration():
    data = PromptDataModule(Numbered(48), batch_size=8, steps_per_iteration=None, seed=3)
    for iteration in (0, 1):
        loader = data.train_dataloader()
        loader.batch_sampler.set_epoch(iteration)
        seen = [e.uid for batch in loader for e in batch]
        assert len(loader) == 6 and sorted(seen) == sorted(f"q{i}" for i in range(48))
    assert data.iteration_plan() == {"train_size": 48, "global_batch_size": 8, "steps_per_iteration": 6,
                                     "passes_per_iteration": 1.0}


def test_processes_share_one_pass_and_an_explicit_number_wins():
    data = PromptDataModule(Numbered(48), batch_size=8, steps_per_iteration=None)
    assert data.iteration_plan(world_size=2) == {"train_size": 48, "global_batch_size": 16,
                                                 "steps_per_iteration": 3, "passes_per_iteration": 1.0}
    fixed = PromptDataModule(Numbered(48), batch_size=8, steps_per_iteration=12)
    assert fixed.iteration_plan(world_size=2)["passes_per_iteration"] == 4.0  # 12 steps x 16 prompts / 48
    loader = fixed.train_dataloader()
    assert len(loader) == 12 and len(list(loader)) == 12


@pytest.mark.parametrize("steps", [0, -1, 2.5, "all", True])
def test_a_bad_steps_per_iteration_is_one_line_naming_null(steps):
    with pytest.raises(LaserConfigError, match=r"data.steps_per_iteration=.*null \(one pass"):
        PromptDataModule(Numbered(8), steps_per_iteration=steps)


# Training prompts per task (GSM8K's and StrategyQA's train splits; MMLU: a seeded half of each subject).
REASONING_TASKS = {"gsm8k": 7473, "strategyqa": 2061, "mmlu": None}


@pytest.mark.parametrize("task", REASONING_TASKS)
def test_each_task_of_the_reasoning_table_makes_one_pass_per_iteration(task):
    if not (DATA_DIR / task).exists():
        pytest.skip(f"benchmark data not found at {DATA_DIR / task} (see ../shared/data/README.md)")
    cfg = compose_config(["+experiment=reasoning_table", f"task={task}", f"task.data_dir={DATA_DIR / task}"])
    assert cfg.data.steps_per_iteration is None
    data = instantiate(cfg.data, task=instantiate(cfg.task))
    for world in (1, 8):
        plan = data.iteration_plan(world_size=world)
        size, global_batch = plan["train_size"], cfg.data.batch_size * world
        assert size == (REASONING_TASKS[task] or size) and plan["global_batch_size"] == global_batch
        assert plan["steps_per_iteration"] == -(-size // global_batch)
        assert 1.0 <= plan["passes_per_iteration"] < 1.0 + global_batch / size


def test_one_pass_under_category_grouping_tops_up_from_the_next_round():
    """One category per batch: a round over the set drops each category's remainder (b's 13th prompt), so
    ceil(33 / 4) = 9 steps are the round's 8 full batches plus one of the next shuffled round."""
    examples = [Example(f"{c}{i}", f"{c}{i}", "0", category=c)
                for c, n in (("a", 20), ("b", 13)) for i in range(n)]
    task = Numbered(0)
    task.examples = examples
    data = PromptDataModule(task, batch_size=4, steps_per_iteration=None, group_by_category=True)
    batches = list(data.train_dataloader())
    assert len(batches) == 9  # ceil(33 / 4)
    assert all(len({e.category for e in batch}) == 1 for batch in batches)
    first_round = list(itertools.islice((e.uid for batch in batches for e in batch), 32))
    assert len(set(first_round)) == 32


def test_held_out_prompts_are_never_in_a_training_batch():
    """A guard's dev prompts (laser/guard/) are left out of every iteration's batches and of the train size."""
    task = Numbered(20)
    data = PromptDataModule(task, batch_size=4, steps_per_iteration=None, held_out={"q3", "q17"})
    assert data.iteration_plan(world_size=1)["train_size"] == 18
    loader = data.train_dataloader()
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        uids = {e.uid for batch in loader for e in batch}
        assert "q3" not in uids and "q17" not in uids and len(uids) >= 16
