"""Every documented command is a test (issue #22 item 2).

`documented_commands.collect()` finds every `python -m laser.*` command of README.md, docs/**/*.md,
benchmarks/README.md and the opening comments of conf/**/*.yaml, so a new command is tested with no
edit here. A command written in several places (same text, same mark; `<overrides>` counts as nothing)
is tested once, and a failure names every file:line that holds it. A command runs unless it carries a mark (MARKS: `# gpu`, ...).

- Unmarked `laser.run` / `laser.bestofn` single runs run in this process, composed from the command's
  overrides as Hydra composes them, SHRUNK (documented_runs.SHRINKS: conftest's SHRINK, `+debug=tiny`,
  plus caps on the warm start, generation and the data, for every key the command does not set itself;
  a pool that trains its RMs trains briefly, conftest.briefly). They cache models in the session's cache
  and must end complete. Why shrunk: about 65 documented runs take ~40 s to minutes each
  as written (over 40 min); shrunk, each still builds every group and knob it names and runs the whole
  step (generate, score, pair, update, bandit, evaluation, checkpoint), in seconds.
- A run whose text states figures (documented_commands.stated_figures: test accuracy, time) runs AS
  WRITTEN in a subprocess, not shrunk, and the figures are checked: accuracy within ACCURACY_TOLERANCE,
  the child's CPU time (robust to other processes' load) within TIME_FACTOR of the stated seconds.
- Every other unmarked command (other modules, chains such as `server & ... && laser.run; kill $!`, runs
  of several processes, `--cfg job`) runs as written in bash from the repository root, with only
  `hydra.run.dir=` / `hydra.sweep.dir=` into tmp_path, paths.cache_dir and LASER_CACHE_DIR on the
  session's cache and the shrink added; a fixed server port moves to a free one. It must exit 0
  (`laser.plan`: 0 fits, 1 does not) and each laser run in it must leave a complete results.json. A
  `$ ` command whose output the docs show must print the same plan verdict (fits or not, the peak).
- Placeholders (`<RM>`, `A.json`, `outputs/runs/<run>`, ...) are filled from documented_runs.PLACEHOLDERS
  with files the test makes; `outputs/multiruns/<time>` after a sweep (same line, or up to two lines
  below it) is that sweep's folder. An unmarked command with a placeholder not in the table fails.
- `# sweep`: a CPU sweep too long for CI (the 60-job tables take 25-70 min). Every job composes (jobs
  that differ only in `seed` once: a seed cannot break composition) and ONE job, the first, runs shrunk
  in this process, in the sweep's folder; the rest of its line (`&& python -m laser.report ...`) and a
  report command below it run as written on that folder.
- `# gpu`, `# hub`, `# remote`, `# extra`: every job composes (quick: the first; slow: all, seeds once);
  a `# gpu` laser.run also plans its first job with `python -m laser.plan` (exit 0 or 1; 2 = bad config).
- `# server`: started on a free port; it must answer /health; then stopped.
- `# usage` (a synopsis: `a|b` alternatives, `...`, a bare module name), and marked commands of modules
  that are not Hydra apps: `python -m <module> --help` exits 0 and names every `--option` they write.

Quick suite: collection, marks, placeholders, each command's first job composes, `--cfg` commands run.
Slow suite: every run, sweep job, plan, server and --help (budget: ~10 min on 2 cores).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest
from conftest import REPO, compose_config
from documented_commands import (
    MARKS,
    Command,
    collect,
    environment,
    first_job,
    hydra_invocation,
    override_key,
    split_chain,
    stated_figures,
    sweep_jobs,
)
from documented_runs import (
    MadeFiles,
    canonical,
    fill,
    fill_for_composing,
    on_free_port,
    run_in_process,
    run_line,
    several_processes,
    unknown_placeholders,
)

ACCURACY_TOLERANCE = 0.05  # the README: "expect a few points of spread across CPUs and thread counts"
TIME_FACTOR = 3.0
PLAN_VERDICT = re.compile(r"^(fits|does not fit) (\d+) GB: \D*?(\d+\.\d+) GiB", re.M)
COMMANDS = collect()


def sweep_above(commands: list[Command]) -> dict[Command, Command]:
    """Each command on `outputs/multiruns/<time>` -> the sweep up to two lines above it in the same file."""
    above = {}
    for previous, command in zip(commands, commands[1:], strict=False):
        if ("outputs/multiruns/<time>" in command.text and previous.file == command.file
                and 0 <= command.line - previous.line <= 2 and is_sweep(previous)):
            above[command] = previous
    return above


def is_sweep(command: Command) -> bool:
    return any(h and h.multirun for h in map(hydra_invocation, command.invocations()))


SWEEP_ABOVE = sweep_above(COMMANDS)
GROUPS: dict[tuple, list[Command]] = {}
for _command in COMMANDS:  # grouped by what the test does: text, mark and the sweep above it
    _above = SWEEP_ABOVE.get(_command)
    GROUPS.setdefault((canonical(_command.text), _command.mark, _above and _above.text), []).append(_command)


def written(command: Command) -> list[Command]:
    """Every place the command is written (its group)."""
    return next(group for group in GROUPS.values() if command in group)


def places(command: Command) -> str:
    return ", ".join(c.where for c in written(command))


def kind(command: Command) -> str:
    """What the test does with it: run-in-process, run-as-written, compose, sweep, server, usage."""
    first = hydra_invocation(command.invocations()[0])
    if command.mark in ("gpu", "hub", "remote", "extra"):
        return "compose" if first else "usage"
    if command.mark:
        return command.mark
    figures = any(stated_figures(c.note) != stated_figures("") for c in written(command))
    if (first and len(command.invocations()) == 1 and not first.multirun and not first.flags
            and not several_processes(first) and not figures):
        return "run-in-process"
    return "run-as-written"


def params(*kinds: str) -> list:
    return [pytest.param(group[0], id=group[0].where) for group in GROUPS.values() if kind(group[0]) in kinds]


@pytest.fixture(scope="session")
def made(tmp_path_factory, cache_dir) -> MadeFiles:
    return MadeFiles(tmp_path_factory.mktemp("documented"), cache_dir)


def filled(command: Command, made: MadeFiles) -> str:
    """The command with its placeholders filled; `outputs/multiruns/<time>` is the sweep above it, if any."""
    above = SWEEP_ABOVE.get(command)
    return fill(command.text, lambda name: str(made.sweep_of(above.text)) if name == "sweep" and above else made(name))


# --- quick: what the docs hold ---------------------------------------------------------------------------


def test_the_docs_hold_over_a_hundred_commands_and_each_is_tested_one_way():
    counts = Counter(kind(group[0]) for group in GROUPS.values())
    print(f"\ndocumented commands: {len(COMMANDS)} ({len(GROUPS)} distinct): "
          + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())))
    assert len(COMMANDS) > 100, f"only {len(COMMANDS)} documented commands found: is the collector broken?"
    assert {c.file.split("/")[0] for c in COMMANDS} >= {"README.md", "conf", "docs", "benchmarks"}


def test_every_mark_fits_its_command():
    wrong = [f"{c.where}: `# sweep` on a command that does not sweep (-m): {c.text}"
             for c in COMMANDS if c.mark == "sweep" and not is_sweep(c)]
    wrong += [f"{c.where}: `# server` on a command that serves nothing: {c.text}" for c in COMMANDS
              if c.mark == "server" and c.invocations()[0][0] not in ("laser.rewards.server", "laser.rewards.remote")]
    assert not wrong, "\n".join(wrong) + f"\nthe marks: {MARKS}"


def test_every_placeholder_of_a_command_that_runs_is_one_the_test_fills():
    unknown = [f"{c.where}: {p!r} in `{c.text}`" for c in COMMANDS if kind(c) not in ("compose", "usage")
               for p in unknown_placeholders(c.text)]
    assert not unknown, ("placeholders the test cannot fill (add a file to documented_runs.PLACEHOLDERS, or mark "
                         "the command, e.g. `# usage`):\n" + "\n".join(unknown))


def test_the_default_runs_stated_figures_are_found():
    """The README's accuracy and time of the default run parse (else their check would silently vanish)."""
    figures = [stated_figures(c.note) for c in COMMANDS if c.text == "python -m laser.run" and c.file == "README.md"]
    assert any(f.accuracy for f in figures) and any(f.seconds for f in figures), figures


# --- quick: every command composes; --cfg commands print ------------------------------------------------


def composed_jobs(command: Command, every: bool) -> int:
    """Compose each Hydra invocation's first job (command-line sweeps at their first value), or with
    every=True each job of its sweep (jobs that differ only in seed once); returns how many composed."""
    count, problem = 0, None
    for args in Command(command.file, command.line, fill_for_composing(command.text), None).invocations():
        invocation = hydra_invocation(args)
        if invocation is None:
            continue
        try:
            if every:
                jobs = sweep_jobs(invocation, lambda name, overrides: compose_config(overrides, name, hydra=True))
                jobs = list({tuple(o for o in job if override_key(o) != "seed"): job for job in jobs}.values())
            else:
                jobs = [first_job(invocation)]
            for job in jobs:
                compose_config(job, invocation.config_name)
                count += 1
        except Exception as error:  # Hydra's errors, each a different class: the message is what matters
            problem = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
            break
    assert problem is None, f"{places(command)}: `{command.text}` does not compose: {problem}"
    return count


@pytest.mark.parametrize("command", [p for p in params("run-in-process", "run-as-written", "compose", "sweep")
                                     if any(map(hydra_invocation, p.values[0].invocations()))])
def test_documented_command_composes(command):
    assert composed_jobs(command, every=False) >= 1


@pytest.mark.parametrize("command", [p for p in params("run-as-written") if "--cfg" in p.values[0].text])
def test_documented_cfg_command_prints_the_config(command, tmp_path, cache_dir):
    run = run_line(command.text, tmp_path, cache_dir)
    assert run.returncode == 0, f"{places(command)}: `{command.text}` failed:\n{run.stderr[-3000:]}"
    assert "policy:" in run.stdout and "laser:" in run.stdout, run.stdout[:500]


# --- slow: runs ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", params("run-in-process"))
def test_documented_run(command, tmp_path, cache_dir, made, monkeypatch):
    text = filled(command, made)
    for name, value in environment(text).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LASER_CACHE_DIR", str(cache_dir))
    invocation = hydra_invocation(split_chain(text)[0][2:])
    try:
        results, problem = run_in_process(invocation, list(invocation.overrides), tmp_path / "run", cache_dir), None
    except Exception as error:  # whatever the run raises: the test names the command and where it is written
        results, problem = None, f"{type(error).__name__}: {error}"
    assert problem is None, f"{places(command)}: `{command.text}` failed: {problem}"
    assert results["complete"], f"{places(command)}: `{command.text}` did not complete"


@pytest.mark.slow
@pytest.mark.parametrize("command", [p for p in params("run-as-written") if "--cfg" not in p.values[0].text])
def test_documented_command_runs_as_written(command, tmp_path, cache_dir, made, capsys):
    figures = {c.where: stated_figures(c.note) for c in written(command)}
    states_figures = any(f.accuracy or f.seconds for f in figures.values())
    run = run_line(filled(command, made), tmp_path, cache_dir, shrink=not states_figures)
    ok = run.returncode in ((0, 1) if command.invocations()[0][0] == "laser.plan" else (0,))
    assert ok, f"{places(command)}: `{command.text}` failed (exit {run.returncode}); ran\n{run.line}\n{run.stderr[-3000:]}"
    results = run.results()
    assert len(results) >= len(run.run_dirs) and all(r["complete"] for r in results), \
        f"{places(command)}: `{command.text}` left no complete results.json; ran\n{run.line}\n{run.stderr[-3000:]}"
    for where, stated in figures.items():
        check_figures(f"{where}: `{command.text}`", stated, results, run.cpu_seconds)
    if states_figures:
        with capsys.disabled():
            stated = [f"{f.accuracy or '-'} / {f.seconds or '-'} s" for f in figures.values() if f.accuracy or f.seconds]
            print(f"\n{places(command)}: `{command.text}` states (accuracy / time) {', '.join(stated)}; the run "
                  f"gave {results[0]['final']['test/accuracy']:.3f} in {run.cpu_seconds:.0f} CPU s")
    for shown in (c.note for c in written(command) if PLAN_VERDICT.search(c.note)):
        check_plan_verdict(command, shown, run.stdout)


def check_figures(where: str, stated, results: list[dict], cpu_seconds: float) -> None:
    """`where` (file:line and command) states figures: the run's test accuracy and CPU time must match them."""
    if stated.accuracy is not None:
        accuracy = results[0]["final"]["test/accuracy"]
        assert abs(accuracy - stated.accuracy) <= ACCURACY_TOLERANCE, \
            f"{where} states test accuracy {stated.accuracy}, the run gave {accuracy} (tolerance {ACCURACY_TOLERANCE})"
    if stated.seconds is not None:
        assert stated.seconds / TIME_FACTOR <= cpu_seconds <= stated.seconds * TIME_FACTOR, \
            f"{where} states ~{stated.seconds:.0f} s, the run took {cpu_seconds:.0f} CPU s (more than {TIME_FACTOR}x off)"


def check_plan_verdict(command: Command, shown: str, printed: str) -> None:
    (verdict, gb, peak), got = PLAN_VERDICT.search(shown).groups(), PLAN_VERDICT.search(printed)
    assert got and got.group(1, 2) == (verdict, gb) and abs(float(got.group(3)) - float(peak)) <= 0.01 * float(peak), \
        f"{places(command)}: the docs show `{verdict} {gb} GB: ... {peak} GiB`, the plan printed: {printed[-500:]}"


@pytest.mark.slow
@pytest.mark.parametrize("command", params("sweep"))
def test_documented_sweep_composes_every_job_and_runs_one(command, tmp_path, cache_dir, made):
    composed_jobs(command, every=True)
    try:
        folder, problem = made.sweep_of(command.text), None
    except Exception as error:  # whatever the job raises: the test names the command and where it is written
        folder, problem = None, f"{type(error).__name__}: {error}"
    assert problem is None, f"{places(command)}: one job of `{command.text}` failed: {problem}"
    rest = command.text.split(" && ", 1)[1:]  # `... && python -m laser.report outputs/multiruns/<time>`
    if rest:
        run = run_line(rest[0].replace("outputs/multiruns/<time>", str(folder)), tmp_path, cache_dir)
        assert run.returncode == 0, f"{places(command)}: `{rest[0]}` failed on the sweep's job:\n{run.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("command", params("compose"))
def test_documented_command_composes_every_job_and_plans(command, made, capsys):
    composed_jobs(command, every=True)
    first = hydra_invocation(command.invocations()[0])
    if command.mark != "gpu" or first.config_name != "config":
        return  # the plan is laser.run's (a best-of-n run composes conf/bestofn.yaml)
    from laser.plan.__main__ import main as plan

    text = fill_for_composing(fill(command.text, made))
    invocation = hydra_invocation(split_chain(text)[0][2:])
    job = sweep_jobs(invocation, lambda name, overrides: compose_config(overrides, name, hydra=True))[0]
    code = plan(job)
    assert code in (0, 1), f"{places(command)}: `python -m laser.plan {' '.join(job)}` failed: {capsys.readouterr().err}"


@pytest.mark.slow
@pytest.mark.parametrize("command", params("server"))
def test_documented_server_answers(command, cache_dir, made):
    from laser.rewards.http_client import wait_for

    text = fill(command.text, made)
    text, _ = on_free_port(text if "--port " in text else f"{text} --port 8765")  # 8765: the server's default
    port = re.search(r"--port (\d+)", text).group(1)
    args = split_chain(text)[0]
    server = subprocess.Popen([sys.executable, *args[1:], f"paths.cache_dir={cache_dir}"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        problem = wait_for(f"http://127.0.0.1:{port}", 120)
        assert problem is None, f"{places(command)}: `{command.text}` did not answer: {problem}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert json.load(answer)["rms"], f"{places(command)}: `{command.text}` serves no RM"
    finally:
        server.kill()
        _, stderr = server.communicate()
    assert server.returncode is not None, stderr


HELP: dict[str, subprocess.CompletedProcess] = {}


@pytest.mark.slow
@pytest.mark.parametrize("command", params("usage"))
def test_documented_synopsis_names_real_options(command):
    module = command.invocations()[0][0]
    if module not in HELP:
        HELP[module] = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True,
                                      text=True, timeout=300)
    result = HELP[module]
    assert result.returncode == 0, f"{places(command)}: `python -m {module} --help` failed:\n{result.stderr[-2000:]}"
    missing = [o for o in re.findall(r"(?<!\S)(--[a-z][\w-]*)", command.text) if o not in result.stdout]
    assert not missing, f"{places(command)}: `{command.text}` names {missing}, which `python -m {module} --help` lacks"
