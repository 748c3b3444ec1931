"""How test_documented_commands.py runs a documented command: the files that stand in for its
placeholders, the shrink it runs under, and the shell line or in-process job it runs as."""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import DATA_DIR, REPO, SHRINK, briefly, compose_config
from documented_commands import HydraInvocation, hydra_invocation, override_key, split_chain, sweep_jobs

# The shrink: conftest's SHRINK (`+debug=tiny`: iterations, steps, samples, evaluation) for laser.run, plus
# caps for what it leaves (the tiny policy's warm start, generation length, the reasoning and instruction
# tasks' data), and best-of-n's own knobs. `+group=choice` is added unless the command picks that group;
# a number is a cap, applied where the composed value is larger or null (unlimited); the rest is set as is.
SHRINKS = {
    "config": SHRINK + ["policy.warm_start.steps=2", "policy.max_new_tokens=16", "task.train_limit=64",
                        "task.test_limit=16"],
    "bestofn": ["task.limit=6", "task.train_limit=16", "num_samples=3", "batch_size=3", "policy.max_new_tokens=8",
                "policy.max_prompt_tokens=256"],
}

# What the docs leave to the reader, and what the test puts there: a file MadeFiles makes (by name),
# a literal value (after "="), or nothing.
PLACEHOLDERS = {
    "outputs/multiruns/<time>": "sweep",  # the sweep just before it (same line, or two lines up), else a tiny one
    "<sweep dir>": "sweep", "<sweep>": "sweep",
    "outputs/runs/<run>": "stopped_run", "<run folder>": "stopped_run",
    "outputs/runs/2026-11-26_21-42-56": "stopped_run",  # the README's example run folder
    "A.json": "outputs_a", "outputs_a.json": "outputs_a", "policy.json": "outputs_a",
    "B.json": "outputs_b", "outputs_b.json": "outputs_b", "reference.json": "outputs_b",
    "<RM>": "classifier",  # a local reward model: an untrained Llama classifier
    "<folder>": "encoder",  # context=sentence_encoder's local encoder: a tiny BERT
    "/models/my-sft-model": "causal_lm",  # a local causal LM: a tiny Llama
    "/models/llama3-8b": "llama3_8b_shape",  # a folder holding Llama-3-8B's config.json (what the plan reads)
    "/data/benchmarks": "data", "/scratch/laser": "cache",
    "<overrides>": "", "[overrides]": "",  # `python -m laser.plan <overrides>`: the default run's plan
    "<rm_pool name or yaml>": "=tiny_with_classifier", "<pool>": "=tiny_with_classifier",
    "METHOD": "=random",  # a method of the tiny sweep (`--baseline METHOD`)
}
# A placeholder: `<name>`, `...`, `[name]`, or an all-caps metavar standing alone (`--baseline METHOD`).
ANY_PLACEHOLDER = re.compile(r"<[^<>]+>|\.\.\.|\[[a-z ]+\]|(?<=\s)[A-Z][A-Z_]{2,}(?=\s|$)")
OPTIONAL = re.compile(r"(?<=\s)\[(--[^\[\]]*)\]")  # `[--option value]`: the test runs the optional part too


def boundary(key: str) -> str:
    return r"(?<![\w/.<-])" + re.escape(key) + r"(?![\w.>-])"


def unknown_placeholders(text: str) -> list[str]:
    """What a command leaves to the reader (`<name>`, `...`, `[optional]`) that PLACEHOLDERS cannot fill."""
    for key in PLACEHOLDERS:
        text = re.sub(boundary(key), "", text)
    return ANY_PLACEHOLDER.findall(OPTIONAL.sub(r"\1", text))


def fill(text: str, made: Callable[[str], str]) -> str:
    """The command with every known placeholder replaced (`made(name)`: a file the test made)."""
    for key, value in PLACEHOLDERS.items():
        if re.search(boundary(key), text):
            replacement = value[1:] if value.startswith("=") else made(value) if value else ""
            text = re.sub(boundary(key), lambda _, r=replacement: r, text)
    return re.sub(r" {2,}", " ", OPTIONAL.sub(r"\1", text)).strip()


def canonical(text: str) -> str:
    """The command without the placeholders that stand for nothing (`python -m laser.plan <overrides>` is
    `python -m laser.plan`): commands equal this way are run once."""
    for key, value in PLACEHOLDERS.items():
        if not value:
            text = re.sub(boundary(key), "", text)
    return re.sub(r" {2,}", " ", text).strip()


def fill_for_composing(text: str) -> str:
    """The command with any placeholder replaced by a stand-in word, so that Hydra can parse it."""
    return ANY_PLACEHOLDER.sub(lambda m: m.group(0) if m.group(0) == "..." else "placeholder", text)


def shrunk(invocation: HydraInvocation, overrides: list[str] | None = None) -> list[str]:
    """The overrides (default: the invocation's) plus the shrink (SHRINKS) for every key they do not set
    themselves and the composed config has."""
    from omegaconf import OmegaConf

    overrides = list(invocation.overrides if overrides is None else overrides)
    own = {override_key(o) for o in overrides}
    shrink = SHRINKS[invocation.config_name]
    added = [o for o in shrink if o.startswith("+") and override_key(o) not in own]  # +debug=tiny, last
    cfg = compose_config(overrides + added, invocation.config_name)
    for key, value in (o.split("=", 1) for o in shrink if not o.startswith("+")):
        current = OmegaConf.select(cfg, key, default="<absent>", throw_on_resolution_failure=False)
        if key in own or current == "<absent>":
            continue
        if not value.isdigit() or current is None or not isinstance(current, int) or current > int(value):
            added.append(f"{key}={value}")
    return overrides + added


def several_processes(invocation: HydraInvocation) -> bool:
    """A run that starts processes of its own (`trainer.devices=2`): it cannot run inside pytest."""
    devices = [o.split("=", 1)[1] for o in invocation.overrides if override_key(o) == "trainer.devices"]
    return any(d.isdigit() and int(d) > 1 for d in devices)


def with_arguments(text: str, extra: Callable[[list[str]], list[str]]) -> str:
    """The shell line with `extra(args)` appended to each `python -m <module> args` in it (args unquoted)
    and `python` as this interpreter."""
    lexer = shlex.shlex(text, posix=False, punctuation_chars="&;|")
    lexer.whitespace_split = True
    out: list[str] = []
    simple: list[str] = []

    def flush() -> None:
        words = [w.strip("'\"") for w in simple]
        at = next((i for i, w in enumerate(words[:-1]) if w == "python" and words[i + 1] == "-m"), None)
        if at is not None:
            simple[at] = shlex.quote(sys.executable)
            simple.extend(shlex.quote(a) for a in extra(words[at + 2:]))
        out.extend(simple)
        simple.clear()

    for token in lexer:
        if set(token) <= set("&;|"):
            flush()
            out.append(token)
        else:
            simple.append(token)
    flush()
    return " ".join(out)


def on_free_port(text: str) -> tuple[str, dict[str, str]]:
    """A line that serves on a fixed port (`--port 8000`) moved to a free one, and the environment that
    points a pool's served arms at it (rm_pool=mixed_example reads LASER_VLLM_URL)."""
    fixed = re.search(r"--port (\d+)", text)
    if not fixed:
        return text, {}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = re.sub(rf"(--port |127\.0\.0\.1:){fixed.group(1)}\b", rf"\g<1>{port}", text)
    return text, {"LASER_VLLM_URL": f"http://127.0.0.1:{port}"}


@dataclass
class LineRun:
    """A shell line's outcome: exit code, output, the children's CPU seconds, the laser folders it wrote."""

    line: str
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float
    run_dirs: list[Path] = field(default_factory=list)

    def results(self) -> list[dict]:
        """Every results.json the line's laser runs wrote (a sweep: one per job)."""
        return [json.loads(p.read_text()) for d in self.run_dirs for p in sorted(d.rglob("results.json"))]


def run_line(text: str, out: Path, cache_dir: Path, shrink: bool = True, timeout: int = 600) -> LineRun:
    """`text` in bash from the repository root: each laser.run / laser.bestofn of it gets only
    hydra.run.dir (hydra.sweep.dir) under `out`, paths.cache_dir and, with `shrink`, the shrink."""
    text, env = on_free_port(text)
    run_dirs: list[Path] = []

    def extra(args: list[str]) -> list[str]:
        invocation = hydra_invocation(args)
        if invocation is None:
            return []
        folder = out / f"job{len(run_dirs)}"
        run_dirs.append(folder)
        if invocation.flags:  # --cfg job: prints, runs nothing
            return []
        added = [f"hydra.{'sweep' if invocation.multirun else 'run'}.dir={folder}", f"paths.cache_dir={cache_dir}"]
        return added + (shrunk(invocation)[len(invocation.overrides):] if shrink else [])

    line = with_arguments(text, extra)
    env = {**os.environ, "LASER_CACHE_DIR": str(cache_dir), **env}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(["bash", "-c", line], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = "", f"timed out after {timeout} s"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # a server left in the background, a hung run
        except ProcessLookupError:
            pass
        process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return LineRun(line, process.returncode, stdout, stderr, cpu, run_dirs)


def run_in_process(invocation: HydraInvocation, overrides: list[str], out: Path, cache_dir: Path) -> dict[str, Any]:
    """One job of `python -m laser.run|bestofn <overrides>` in this process, shrunk, writing into `out`
    (a resume: into the folder it resumes)."""
    from laser.bestofn import run as run_bestofn
    from laser.run import run

    overrides = shrunk(invocation, overrides)
    resume = next((o.split("=", 1)[1] for o in overrides if override_key(o) == "resume"), None)
    out = Path(resume) if resume else out
    cfg = briefly(compose_config(overrides, invocation.config_name, out, cache_dir))
    return (run if invocation.config_name == "config" else run_bestofn)(cfg, out)


class MadeFiles:
    """The files that stand in for the docs' placeholders, each made once per session (a stopped run
    once per use: a resume changes it), and the folder of each documented sweep's one job."""

    def __init__(self, root: Path, cache_dir: Path) -> None:
        self.root, self.cache_dir = root, cache_dir
        self.made: dict[str, str] = {"data": str(DATA_DIR), "cache": str(cache_dir)}
        self.sweeps: dict[str, Path] = {}

    def __call__(self, name: str) -> str:
        if name == "stopped_run":
            copy = self.root / f"resumable-{len(list(self.root.glob('resumable-*')))}"
            shutil.copytree(self.file("stopped_run"), copy)
            return str(copy)
        return self.file(name)

    def file(self, name: str) -> str:
        if name not in self.made:
            self.made[name] = str(getattr(self, f"make_{name}")(self.root / name))
        return self.made[name]

    def sweep_of(self, text: str, jobs: int = 1) -> Path:
        """The folder of the sweep `text` (`python -m laser.run -m ...`), its first `jobs` jobs run shrunk."""
        if text not in self.sweeps:
            invocation = hydra_invocation(split_chain(text)[0][2:])
            folder = self.root / f"sweep-{len(self.sweeps)}"
            for number, job in enumerate(sweep_jobs(invocation, lambda name, o: compose_config(o, name, hydra=True))[:jobs]):
                results = run_in_process(invocation, job, folder / str(number), self.cache_dir)
                assert results["complete"], text
            self.sweeps[text] = folder
        return self.sweeps[text]

    def make_sweep(self, folder: Path) -> Path:
        """Two methods on one seed (a report's tables, plots and paired differences have something to read)."""
        return self.sweep_of("python -m laser.run -m bandit=linucb,random", jobs=2)

    def make_stopped_run(self, folder: Path) -> Path:
        run = hydra_invocation(["laser.run"])
        results = run_in_process(run, ["stop_after_iteration=1"], folder, self.cache_dir)
        assert not results["complete"]
        return folder

    def make_outputs_a(self, folder: Path) -> Path:
        return self.outputs(folder, ["4", "a long and careful answer", "yes"])

    def make_outputs_b(self, folder: Path) -> Path:
        return self.outputs(folder, ["four", "short", "no, because it is not"])

    @staticmethod
    def outputs(folder: Path, answers: list[str]) -> Path:
        """An AlpacaEval model_outputs.json with three instructions."""
        folder.mkdir(parents=True)
        rows = [{"instruction": q, "output": a, "generator": folder.name, "dataset": "test"}
                for q, a in zip(["What is 2 + 2?", "Explain rain.", "Is ice cold?"], answers, strict=True)]
        (folder / "model_outputs.json").write_text(json.dumps(rows))
        return folder / "model_outputs.json"

    def make_classifier(self, folder: Path) -> str:
        from laser.tiny import build_untrained_classifier

        return build_untrained_classifier(str(self.cache_dir))

    def make_causal_lm(self, folder: Path) -> str:
        from laser.config.instantiate import instantiate
        from laser.tiny import build_tiny_causal_lm

        return build_tiny_causal_lm(str(self.cache_dir), instantiate(compose_config([]).task))

    def make_encoder(self, folder: Path) -> Path:
        from transformers import BertConfig, BertModel

        from laser.tiny import build_tokenizer

        tokenizer = build_tokenizer(["which is larger, 3 or 7?", "which is smaller?"], vocab_size=280)
        tokenizer.add_special_tokens({"cls_token": "<s>", "sep_token": "</s>"})
        BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    def make_llama3_8b_shape(self, folder: Path) -> Path:
        from laser.plan.shapes import SHAPES_DIR

        folder.mkdir(parents=True)
        shutil.copy(SHAPES_DIR / "meta-llama--Meta-Llama-3-8B" / "config.json", folder / "config.json")
        return folder
