"""requirements/lock-cpu.txt pins every dependency pyproject.toml declares (core and the dev extra) at a
version pyproject allows: a dependency added or a floor raised without re-running
requirements/compile_lock.sh fails here, not on a user's `pip install -r`."""

from __future__ import annotations

import re

import tomllib
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def locked_versions(text: str) -> dict[str, str]:
    """name -> pinned version of each `name==version` line of a pip lock file (hash lines skipped)."""
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\]+)", text, flags=re.MULTILINE)
    return {canonicalize_name(name.split("[")[0]): version for name, version in pins}


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_the_lock_pins_every_declared_dependency_within_its_range():
    locked = locked_versions((REPO / "requirements" / "lock-cpu.txt").read_text())
    problems = []
    for requirement in declared_requirements():
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} outside {requirement.specifier}")
    assert not problems, "re-run requirements/compile_lock.sh: " + "; ".join(problems)


def test_locked_versions_reads_pins_and_ignores_hashes():
    text = "torch==2.13.0+cpu \\\n    --hash=sha256:abc\nHydra_Core==1.3.2 \\\n    --hash=sha256:def\n"
    assert locked_versions(text) == {"torch": "2.13.0+cpu", "hydra-core": "1.3.2"}
