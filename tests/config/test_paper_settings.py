"""Every paper experiment, each job of its sweep, composes to the paper's settings (laser/config/paper.py)
except where a deviation is recorded; the README's deviations table is the one the settings generate."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONF_DIR, REPO, compose_config
from hydra.core.override_parser.overrides_parser import OverridesParser

from laser.config.paper import (
    AXES,
    PAPER_EXPERIMENTS,
    SETTINGS,
    Setting,
    composed_value,
    deviations_markdown,
    governed_by_axis,
)

NOT_SWEEP_AXES = {"seed", "task"}  # seeds repeat a job; every task of a table is held to the same settings
CPU_TWINS = ("_cpu", "cpu_table", "legacy_miniature")  # CPU-scale experiments, not paper configs


def sweep_jobs(name: str) -> list[dict[str, str]]:
    """The jobs of an experiment's own sweep (`hydra.sweeper.params`, seeds left out) as swept key -> value;
    one empty job for a single run."""
    node = yaml.safe_load(Path(CONF_DIR, "experiment", f"{name}.yaml").read_text())
    params = {k: v for k, v in ((node.get("hydra") or {}).get("sweeper", {}).get("params", {})).items()
              if k != "seed"}
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(o.value())]
              for o in overrides]
    return [dict(zip(params, combo, strict=True)) for combo in itertools.product(*values)]


def same(a: Any, b: Any) -> bool:
    """Equal, and a bool never equals a number (True == 1 in Python)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def mismatch(setting: Setting, experiment: str, job: dict[str, str], composed: Any) -> str | None:
    """Why `composed` breaks the table for this experiment's job, or None."""
    where = f"{experiment} [{', '.join(f'{k}={v}' for k, v in job.items()) or 'single run'}]: {setting.key}"
    deviation = setting.deviation_for(experiment)
    if deviation is None and not same(composed, setting.paper):
        return f"{where} = {composed!r}, paper: {setting.paper!r} ({setting.source}); no recorded deviation"
    if deviation is not None and same(composed, setting.paper):
        return f"{where} = the paper's {composed!r}, yet a deviation ({deviation.value!r}) is recorded: remove it"
    if deviation is not None and not same(composed, deviation.value):
        return f"{where} = {composed!r}, recorded deviation: {deviation.value!r}, paper: {setting.paper!r}"
    return None


def test_the_paper_experiments_are_every_experiment_but_the_cpu_twins():
    names = {p.stem for p in Path(CONF_DIR, "experiment").glob("*.yaml")}
    assert set(PAPER_EXPERIMENTS) == {n for n in names if not n.endswith(CPU_TWINS)}


def test_every_swept_key_of_a_paper_experiment_is_a_known_axis():
    """A new sweep axis must say which of its choices is the paper's run (paper.AXES), or the test below
    would hold a baseline's bandit (or context, or pool) to the paper's."""
    for name in PAPER_EXPERIMENTS:
        for job in sweep_jobs(name):
            assert set(job) <= set(AXES) | NOT_SWEEP_AXES, f"{name} sweeps {sorted(set(job) - set(AXES))}"


def test_deviations_name_paper_experiments_and_a_way_back():
    for setting in SETTINGS:
        assert setting.source and set(setting.experiments) <= set(PAPER_EXPERIMENTS), setting.name
        for deviation in setting.deviations:
            assert set(deviation.experiments) <= set(setting.experiments), setting.name
            assert deviation.why and deviation.restore, setting.name


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS)
def test_every_job_composes_to_the_paper_settings_or_a_recorded_deviation(name):
    problems = []
    for job in sweep_jobs(name):
        cfg = compose_config([f"+experiment={name}"] + [f"{key}={value}" for key, value in job.items()])
        for setting in SETTINGS:
            if name in setting.experiments and not governed_by_axis(setting.key, job):
                problems.append(mismatch(setting, name, job, composed_value(cfg, setting.key)))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def test_a_comparison_row_is_exempt_only_on_its_own_axis():
    assert governed_by_axis("bandit.alpha", {"bandit": "random"})
    assert not governed_by_axis("bandit.alpha", {"bandit": "linucb"})
    assert not governed_by_axis("context._target_", {"bandit": "random"})  # a baseline sees the paper's context
    assert governed_by_axis("context.dim", {"context": "last_token", "context.dim": "64"})
    assert not governed_by_axis("context._target_", {"context": "last_token", "context.dim": "64"})
    assert governed_by_axis("selector_reward.term", {"+method": "linucb_dpo"})


def test_the_readme_deviation_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    start = "<!-- generated by laser.config.paper.deviations_markdown() -->\n"
    end = "<!-- end of generated table -->"
    assert start in readme and end in readme, "README.md lacks the generated deviations table's markers"
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == deviations_markdown(), "README's deviations table is stale: paste deviations_markdown()"
