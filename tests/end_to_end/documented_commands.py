"""Every `python -m laser.*` command the repository documents, found where a reader finds it.

Sources: README.md, docs/**/*.md and benchmarks/README.md (fenced and indented code blocks, and inline
code spans that start with the command) and the opening comment block of conf/**/*.yaml. A command is
the text from `python -m laser.` (with any `NAME=value` environment settings and a `$ ` prompt before
it) to its end: the code span's end, a trailing shell comment (` #`), two spaces (prose after the
command in a yaml comment) or the line's end; a trailing `\\` continues it on the next line. Commands
chained on one line (`a && b`, `a & b; kill $!`) are one command. The sweep a committed report was made
from (its first line: "Sweep `<dir> (<command>)`", written by laser.report) is a command too.

A command that cannot run here as written says why in ONE word: the first word of its trailing comment
(`python -m laser.run +experiment=gsm8k   # gpu: ...`; in a code span, inside the span). MARKS lists
the words and what test_documented_commands.py does with each.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MARKS = {
    "gpu": "needs a GPU (paper-scale models): every job composes and `python -m laser.plan` plans it",
    "hub": "needs the Hugging Face hub (a model or a dataset not copied here): every job composes",
    "remote": "needs a service at an address the reader supplies (`<rm-host>`): every job composes",
    "extra": "needs an optional install that is not a dependency (ray, the SmolLM2 wheel): every job composes",
    "sweep": "a CPU sweep too long for CI: every job composes and ONE job runs, shrunk",
    "server": "serves until stopped: the test starts it, waits until it answers, stops it",
    "usage": "a synopsis (`|` alternatives, `...`, a bare module name): its module's --help names every option",
}
MARK_WORD = re.compile(r"#\s*([a-z]+)\b")
START = re.compile(r"(?:\$ )?(?:[A-Z_][A-Z0-9_]*=\S* )*python -m laser\.[a-z]")
INLINE_SPAN = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)?)`(?!`)")  # a code span, at most across one line break
RECORDED_SWEEP = re.compile(r"^Sweep `[^`(]*\((python -m laser\.[^`;]*)[^`]*\)`")  # "(<command>; a note)" too
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.) ")


@dataclass(frozen=True)
class Command:
    """One documented command: where it is, its text as a reader copies it, its mark (or None) and the
    text next to it (its comment, or the list item / paragraph around it: where stated figures are)."""

    file: str
    line: int
    text: str
    mark: str | None
    note: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def invocations(self) -> list[list[str]]:
        """Each `python -m laser.*` invocation of a (possibly chained) command as its argument list, the
        module first: `a && b` gives [[laser.run, ...], [laser.report, ...]]."""
        return [words[2:] for words in split_chain(self.text) if words[:2] == ["python", "-m"]]

    @property
    def modules(self) -> list[str]:
        return [args[0] for args in self.invocations()]


def split_chain(text: str) -> list[list[str]]:
    """A shell line's simple commands as word lists (environment settings dropped), split at `&&`,
    `&`, `;` and `|` outside quotes."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&;|")
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token and set(token) <= set("&;|"):
            commands.append(words)
            words = []
        elif words or not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", token):
            words.append(token)
    return [c for c in commands + [words] if c]


def environment(text: str) -> dict[str, str]:
    """The `NAME=value` settings in front of a command's first invocation."""
    settings = {}
    for word in shlex.split(text):
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
            break
        name, _, value = word.partition("=")
        settings[name] = value
    return settings


def documented_files() -> list[Path]:
    """The files whose commands are tests: README.md, docs/**/*.md, benchmarks/README.md, conf/**/*.yaml."""
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "benchmarks" / "README.md"]
    return [f for f in files if f.exists()] + sorted((REPO / "conf").rglob("*.yaml"))


def collect(files: list[Path] | None = None) -> list[Command]:
    """Every documented command, in file order."""
    commands = []
    for path in files or documented_files():
        text = path.read_text()
        found = yaml_header_commands(text) if path.suffix == ".yaml" else markdown_commands(text)
        commands += [Command(str(path.relative_to(REPO)), line, command, mark, note)
                     for line, command, mark, note in found]
    return commands


def split_mark(rest: str) -> tuple[str | None, str]:
    """The mark of the text after a command (a known word opening its `#` comment) and that text."""
    rest = rest.strip()
    match = MARK_WORD.match(rest)
    return (match.group(1) if match and match.group(1) in MARKS else None), rest


def cut_command(line: str) -> tuple[str, str]:
    """A command line's command and the rest (a trailing `#` comment or, after two spaces, prose)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif (char == "#" and i > 0 and line[i - 1] == " ") or (line.startswith("  ", i) and line[i:].strip()):
            return line[:i].strip(), line[i:]
    return line.strip(), ""


def joined_command(lines: list[str], first: int) -> tuple[str, str, int]:
    """The command starting on line `first` (its `\\` continuations joined), the text after it, and the
    index of its last line."""
    command, rest = cut_command(lines[first][START.search(lines[first]).start():])
    last = first
    while command.endswith("\\") and last + 1 < len(lines):
        last += 1
        command, rest = cut_command(command[:-1].rstrip() + " " + lines[last].strip())
    return command, rest, last


def markdown_commands(text: str) -> list[tuple[int, str, str | None, str]]:
    """(line, command, mark, note) of every command in a markdown file's code blocks and code spans."""
    lines = text.splitlines()
    found, prose = [], list(lines)  # prose: the lines outside code blocks (code blocks blanked)
    fence, in_indented, consumed = None, False, -1
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = None if fence and stripped.startswith(fence) else (fence or stripped[:3])
            prose[i] = ""
            continue
        in_indented = line.startswith("    ") and (in_indented or i == 0 or not lines[i - 1].strip())
        if not (fence or in_indented):
            continue
        prose[i] = ""
        if i > consumed and START.match(stripped):
            command, rest, consumed = joined_command(lines, i)
            mark, note = split_mark(rest)
            if stripped.startswith("$ "):  # a prompt: the block's lines up to the next prompt are its output
                note = "\n".join(shown_output(lines[consumed + 1:]))
            found.append((i + 1, command.removeprefix("$ "), mark, note))
    return [c for _, c in sorted([((c[0], 0), c) for c in found] + span_commands(prose))]


def shown_output(lines: list[str]) -> list[str]:
    """The output a fenced block shows after a `$ ` command: its lines up to the fence or the next prompt."""
    shown = []
    for line in lines:
        if line.strip().startswith(("```", "~~~", "$ ")):
            break
        shown.append(line)
    return shown


def span_commands(prose: list[str]) -> list[tuple[tuple[int, int], tuple[int, str, str | None, str]]]:
    """Commands in inline code spans (and the sweeps recorded at the top of a report) of the prose lines,
    each with its (line, offset) for ordering."""
    found = []
    text = "\n".join(prose)
    for match in INLINE_SPAN.finditer(text):
        content = " ".join(match.group(1).split("\n"))
        if START.match(content):
            line = text.count("\n", 0, match.start()) + 1
            command, rest = cut_command(content)
            found.append(((line, match.start()), (line, command, split_mark(rest)[0], surrounding(prose, line - 1))))
    for i, line in enumerate(prose):
        recorded = RECORDED_SWEEP.match(line)
        if recorded:
            found.append(((i + 1, 0), (i + 1, recorded.group(1), "sweep", line)))
    return found


def surrounding(lines: list[str], i: int) -> str:
    """The list item or paragraph holding line i, and the list it introduces when it ends with ':' (up to
    an item that names another command: that item speaks of its own)."""
    start = i
    while start > 0 and lines[start - 1].strip() and not LIST_ITEM.match(lines[start]):
        start -= 1
    end = i + 1
    while end < len(lines) and lines[end].strip() and not LIST_ITEM.match(lines[end]):
        end += 1
    if lines[end - 1].rstrip().endswith(":"):
        while end < len(lines) and lines[end].strip():
            if LIST_ITEM.match(lines[end]) and any("python -m laser." in line for line in item(lines, end)):
                break
            end += 1
    return " ".join(line.strip() for line in lines[start:end])


def item(lines: list[str], first: int) -> list[str]:
    """The lines of the list item starting at line `first`."""
    end = first + 1
    while end < len(lines) and lines[end].strip() and not LIST_ITEM.match(lines[end]):
        end += 1
    return lines[first:end]


def yaml_header_commands(text: str) -> list[tuple[int, str, str | None, str]]:
    """Commands in a yaml file's opening comment block (the `#` lines before the first line that is not one)."""
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:])
    found, consumed = [], -1
    for i, line in enumerate(header):
        spans = [m for m in INLINE_SPAN.finditer(line) if START.match(m.group(1))]
        for span in spans:
            command, rest = cut_command(span.group(1))
            found.append((i + 1, command, split_mark(rest)[0], line))
        if i > consumed and not spans and START.search(line):
            command, rest, consumed = joined_command(header, i)
            mark, note = split_mark(rest)
            found.append((i + 1, command, mark, note or line))
    return found


HYDRA_APPS = {"laser.run": "config", "laser.bestofn": "bestofn"}  # module -> its primary config in conf/


@dataclass(frozen=True)
class HydraInvocation:
    """A `python -m laser.run|bestofn` invocation: its config, whether it sweeps (`-m`), Hydra's flags
    (`--cfg job`, `--resolve`) and its overrides."""

    config_name: str
    multirun: bool
    flags: tuple[str, ...]
    overrides: tuple[str, ...]


def hydra_invocation(args: list[str]) -> HydraInvocation | None:
    """The invocation of `args` (module first), or None for a module that is not a Hydra app."""
    if args[0] not in HYDRA_APPS:
        return None
    flags, overrides, rest = [], [], iter(args[1:])
    for arg in rest:
        if arg in ("--cfg", "-c", "--package", "-p"):
            flags += [arg, next(rest)]
        elif arg.startswith("-"):
            flags.append(arg)
        else:
            overrides.append(arg)
    multirun = bool({"-m", "--multirun"} & set(flags))
    return HydraInvocation(HYDRA_APPS[args[0]], multirun, tuple(f for f in flags if f not in ("-m", "--multirun")),
                           tuple(overrides))


def sweep_jobs(invocation: HydraInvocation, compose) -> list[list[str]]:
    """Every job's overrides, as Hydra's basic sweeper makes them: the config's `hydra.sweeper.params`,
    then the command line (a key given on both takes the command line's value), one job per element of
    the product. A run that does not sweep is its one job. `compose(config_name, overrides)` must return
    the config with its hydra node (where the sweep's params live)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not invocation.multirun:
        return [list(invocation.overrides)]
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(list(invocation.overrides)) if not o.is_sweep_override()]
    params = compose(invocation.config_name, fixed).hydra.sweeper.get("params") or {}
    overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + list(invocation.overrides))
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def first_job(invocation: HydraInvocation) -> list[str]:
    """The invocation's overrides with each command-line sweep at its first value (the config's own sweep
    params are left to Hydra's defaults: sweep_jobs has them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(invocation.overrides))
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
            for o in parsed]


def override_key(override: str) -> str:
    """`+group/x@pkg=value` -> `group/x@pkg`: the key an override sets."""
    return override.split("=", 1)[0].lstrip("+~")


@dataclass(frozen=True)
class Figures:
    """What the docs state about a command's run: its final test accuracy and its time in seconds."""

    accuracy: float | None
    seconds: float | None


# Ordered: the first pattern that matches a command's note gives the figure.
ACCURACY_PATTERNS = [r"(\d\.\d+)[^()]{0,60}?after \d+ iterations",  # "0.685 here; about 0.68-0.73 ... after 10 iterations"
                     r"test accuracy (\d\.\d+)", r"\((\d\.\d+), ~?\d+ s\)"]  # "(0.46, ~20 s)"
TIME_PATTERNS = [r"\*\*time\*\*: about (\d+) s", r"\(\d\.\d+, ~?(\d+) s\)", r"~(\d+) s on 2 CPU cores",
                 r"(under a minute)"]


def stated_figures(note: str) -> Figures:
    """The figures a command's note states (see ACCURACY_PATTERNS, TIME_PATTERNS)."""
    def first(patterns: list[str]) -> str | None:
        return next((m.group(1) for p in patterns if (m := re.search(p, note))), None)

    accuracy, seconds = first(ACCURACY_PATTERNS), first(TIME_PATTERNS)
    return Figures(float(accuracy) if accuracy else None,
                   60.0 if seconds == "under a minute" else float(seconds) if seconds else None)
