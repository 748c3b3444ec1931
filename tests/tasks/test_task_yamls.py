"""The contract every task meets, checked for every conf/task/*.yaml: a new task (one yaml, maybe one task
file) is picked up here with no list to edit.

Every yaml opens with what it is and how to run it, and `task=<name>` composes into a full job config that
resolves and passes the knob checks. It builds its `_target_`, a `Task`, named after the yaml (or the yaml
it extends), whose prompts are the class's own: a yaml that shows the prompt shows it verbatim (or null,
the class's). Its stop strings are null in the yaml (the task's default), and each one is where the next
prompt block starts: it occurs in every template the task prompts with, and no template ends with its
beginning (generation matches stops across the prompt's end). A task with an answer format has one
prompt per format, each with that format's stop strings. Declared categories are the task's.
Nothing here loads a dataset (the tasks load on first use); tests/tasks/test_task_stop_strings.py checks
the stops against the real rows.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from conftest import CONF_DIR, compose_config
from hydra.utils import get_class
from omegaconf import OmegaConf

from laser.config.checks import check_config
from laser.config.instantiate import instantiate
from laser.tasks.answer_format import ANSWER_FORMATS, MARKERS, STOP_STRINGS
from laser.tasks.base import Task

TASKS = sorted(Path(CONF_DIR, "task").glob("*.yaml"))


@pytest.fixture(scope="module", params=TASKS, ids=lambda p: p.stem)
def job(request, tmp_path_factory, cache_dir):
    """(yaml path, its own node, the job config `task=<name>` composes, resolved, the task it builds)."""
    path = request.param
    cfg = compose_config([f"task={path.stem}"], output_dir=tmp_path_factory.mktemp(path.stem), cache_dir=cache_dir)
    composed = OmegaConf.to_container(cfg.task)  # before resolving: the yaml's interpolations as written
    OmegaConf.resolve(cfg)  # every interpolation of the job resolves
    return path, OmegaConf.load(path), cfg, instantiate(cfg.task), composed


def extends(node) -> list[str]:
    """The task yamls this one builds on (its defaults list, `_self_` left out)."""
    return [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_"]


def templates(task: Task) -> set[str]:
    """Every template the task's prompts end with: one per category where the task has per-category
    prompts (LongBench's subsets), else its `prompt_template`."""
    per_category = getattr(task, "subset_prompts", {})
    return {per_category.get(category, task.prompt_template) for category in task.categories or ("",)}


def assert_stops_start_the_next_prompt(task: Task) -> None:
    assert task.stop_strings and all(isinstance(s, str) and s for s in task.stop_strings), task.stop_strings
    for template in templates(task):
        for stop in task.stop_strings:
            assert stop.strip() in template, (stop, template)  # the next block starts like this one
            assert not any(template.endswith(stop[:i]) for i in range(1, len(stop))), (stop, template)


def test_the_yaml_opens_with_what_it_is_and_how_to_run_it(job):
    path = job[0]
    text = path.read_text()
    assert text.startswith("#") and "python -m laser." in text, path.name


def test_the_yaml_composes_into_a_full_job_config_that_passes_the_checks(job):
    _, node, cfg, _, composed = job
    check_config(cfg)  # every knob's type and range, as `python -m laser.run task=<name>` checks them
    raw = OmegaConf.to_container(node)
    assert {key: composed[key] for key in raw if key != "defaults"} == {k: v for k, v in raw.items() if k != "defaults"}


def test_the_task_is_its_targets_class_named_after_the_yaml(job):
    path, node, cfg, task, _ = job
    cls = get_class(cfg.task._target_)
    assert issubclass(cls, Task) and type(task) is cls
    assert task.name in {path.stem, *extends(node)}  # what results.json and the reports call it
    parameters = inspect.signature(cls.__init__).parameters
    assert set(cfg.task) - {"_target_"} <= set(parameters)  # every knob is a constructor argument


def test_the_prompts_are_the_class_defaults_shown_verbatim(job):
    _, _, cfg, task, _ = job
    cls = type(task)
    if "prompt_templates" in cfg.task:  # one prompt per answer format
        assert dict(cfg.task.prompt_templates) == cls.prompt_templates and set(cls.prompt_templates) == set(ANSWER_FORMATS)
        assert task.prompt_template == cls.prompt_templates[task.answer_format]
    else:
        assert cfg.task.get("prompt_template") in (None, cls.prompt_template)
        assert task.prompt_template == cls.prompt_template
    assert all("{question}" in t or "{input}" in t for t in templates(task))


def test_stop_strings_are_the_task_default_and_start_the_next_prompt(job):
    _, _, cfg, task, _ = job
    assert "stop_strings" in cfg.task and cfg.task.stop_strings is None  # the knob is there, at the default
    assert_stops_start_the_next_prompt(task)


def test_each_answer_format_has_its_prompt_and_its_stop_strings(job):
    _, _, cfg, task, _ = job
    if "answer_format" not in cfg.task:
        assert not hasattr(task, "answer_format")
        return
    assert cfg.task.answer_format == inspect.signature(type(task).__init__).parameters["answer_format"].default
    for answer_format in ANSWER_FORMATS:
        chosen = instantiate(cfg.task, answer_format=answer_format)
        assert chosen.prompt_template == cfg.task.prompt_templates[answer_format]
        assert MARKERS[answer_format].rstrip(":").lower() in chosen.prompt_template.lower()
        assert chosen.stop_strings == STOP_STRINGS[answer_format]
        assert_stops_start_the_next_prompt(chosen)


def test_declared_categories_are_the_tasks(job):
    _, _, cfg, task, _ = job
    assert isinstance(task.categories, tuple) and len(set(task.categories)) == len(task.categories)
    assert all(isinstance(c, str) and c for c in task.categories)
    declared = cfg.task.get("categories", cfg.task.get("subsets"))
    if declared is not None:
        assert task.categories == tuple(declared)
