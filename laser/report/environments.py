"""The environments a sweep's jobs ran under (`results.json` `environment`, laser/runs/provenance.py): one
row per distinct (commit, dirty diff, library versions, CPU, torch threads, CUDA device), with its jobs, and
a warning when one sweep mixes several, since their floats (and so a miniature's decisions) may differ."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from laser.report.jobs import Job

UNRECORDED = "(not recorded: results.json older than its environment block)"


def environment_key(environment: dict[str, Any]) -> str:
    """A one-line description of what can change a run's floats; the same text for the same environment."""
    if not environment:
        return UNRECORDED
    git = environment.get("git") or {}
    commit = (git.get("commit") or "no git")[:10] + (f"+dirty:{git['diff_sha256'][:8]}" if git.get("dirty") else "")
    packages = ", ".join(f"{name} {version}" for name, version in sorted((environment.get("packages") or {}).items())
                         if name != "laser")
    cuda = environment.get("cuda")
    device = f"{cuda['device']} (CUDA {cuda['version']})" if cuda else "no GPU"
    return (f"{commit} | python {environment.get('python')} | {packages} | {environment.get('cpu')} | "
            f"{environment.get('torch_threads')} threads | {device}")


def sweep_environments(jobs: list[Job]) -> dict[str, list[str]]:
    """{environment description: the folders of the jobs that ran under it}, most jobs first."""
    groups: dict[str, list[str]] = defaultdict(list)
    for job in jobs:
        groups[environment_key(job.results.get("environment") or {})].append(str(job.path))
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def environment_lines(environments: dict[str, list[str]]) -> list[str]:
    """The report's section: a warning first when the sweep mixes environments, then one line each."""
    lines = ["", "## Environments", ""]
    if len(environments) > 1:
        lines += [f"**Warning: this sweep ran under {len(environments)} environments.** Float summation order "
                  "differs between them, so the same config and seed can decide and score differently; compare "
                  "methods within one environment.", ""]
    return lines + [f"- {len(paths)} job(s): {key}" for key, paths in environments.items()]
