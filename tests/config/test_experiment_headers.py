"""Every conf/experiment/*.yaml opens with how to launch it, how many jobs its sweep runs and what they cost
(CPU experiments in minutes on 2 cores, the paper-scale ones in GPU-hours), and names only launchers that
conf/hydra/launcher/ has. The job count is computed from the file's own sweep, so a header goes stale the
moment the sweep changes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR
from hydra.core.override_parser.overrides_parser import OverridesParser

from laser.config.paper import PAPER_EXPERIMENTS

EXPERIMENTS = sorted(Path(CONF_DIR, "experiment").glob("*.yaml"))
LAUNCHERS = {p.stem for p in Path(CONF_DIR, "hydra", "launcher").glob("*.yaml")}
JOBS = re.compile(r"\b(\d[\d,]*) jobs?\b")  # "60 jobs", "= 108 jobs", "1 job"
GPU_COST = re.compile(r"\d[\d,.]*\s*GPU-hours\b")
CPU_COST = re.compile(r"\d[\d,.]*\s*min\b.*?\bon 2 cores\b")
NAMED_LAUNCHER = re.compile(r"hydra/launcher=(\w+)")


def header(text: str) -> str:
    """The comment block a yaml file opens with (Hydra's `# @package` line left out), one line of text."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def sweep_job_count(text: str) -> int:
    """Jobs `python -m laser.run -m` launches for this file: the product of the sweep's value counts
    (`hydra.sweeper.params`, parsed as Hydra parses them, so `"[a,b],[c,d]"` is two values); 1 without one."""
    node = yaml.safe_load(text) or {}
    params = (((node.get("hydra") or {}).get("sweeper") or {}).get("params")) or {}
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return math.prod(len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1 for o in overrides)


def stated_job_counts(head: str) -> set[int]:
    return {int(n.replace(",", "")) for n in JOBS.findall(head)}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_header_states_the_sweeps_job_count(path):
    text = path.read_text()
    jobs, stated = sweep_job_count(text), stated_job_counts(header(text))
    assert stated == {jobs}, f"{path.name}: its sweep runs {jobs} job(s); its header states {sorted(stated)}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_header_states_a_cost(path):
    head = header(path.read_text())
    if path.stem in PAPER_EXPERIMENTS:
        assert GPU_COST.search(head), f"{path.name}: a paper-scale header states its cost in GPU-hours"
    else:
        assert CPU_COST.search(head), f"{path.name}: a CPU header states its cost in minutes 'on 2 cores'"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_header_gives_its_launch_command(path):
    head = header(path.read_text())
    assert re.search(rf"python -m laser\.run (-m )?\+experiment={path.stem}\b", head), path.name


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_a_launcher_the_header_names_exists(path):
    named = set(NAMED_LAUNCHER.findall(header(path.read_text())))
    assert named <= LAUNCHERS, f"{path.name} names {sorted(named - LAUNCHERS)}; conf/hydra/launcher/ has {sorted(LAUNCHERS)}"


def test_job_counts_follow_hydras_sweep_syntax():
    sweep = "hydra:\n  sweeper:\n    params:\n"
    assert sweep_job_count("experiment_name: x\n") == 1
    assert sweep_job_count(sweep + "      seed: 0\n") == 1
    assert sweep_job_count(sweep + "      bandit: a,b,c\n      context.dim: null,8\n      seed: 0,1,2,3\n") == 24
    assert sweep_job_count(sweep + '      task.categories: "[a,b],[a,c],[b,c]"\n      seed: 0,1\n') == 6
    assert sweep_job_count(sweep + "      seed: range(0,5)\n") == 5


def test_stated_counts_are_read_from_the_header_only():
    text = "# @package _global_\n# 3 x 4 = 12 jobs, ~5 min on 2 cores\n#   1,080 jobs\nfoo: 2 jobs\n"
    assert stated_job_counts(header(text)) == {12, 1080}
    assert CPU_COST.search(header(text)) and not GPU_COST.search(header(text))
