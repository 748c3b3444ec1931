"""Files that a kill can never leave half written: the one atomic-write rule of the project, JSON and
JSON-lines writers built on it, and the rewind of `selections.jsonl` on resume.

A file (or a folder of model files) is written to a temp sibling, then renamed over its target; the
rename is atomic on POSIX filesystems, so a reader, or a run resumed after a kill, sees the old
version or the new one, never a mix. The temp's name starts with "." and holds `.tmp-`
(`TEMP_PATTERN`), so a resume can sweep away what a killed write left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_PATTERN = ".*.tmp-*"  # the temps of `replace_atomically` (a glob)


def replace_atomically(path: Path, write: Callable[[Path], None]) -> bool:
    """Write `path` (a file or a folder) by calling `write(temp)`, then rename the temp over `path`.

    A temp that is not renamed (the write raised) is removed. A folder that another process renamed
    into place first is kept, ours dropped: returns False then (theirs is as good), True otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid + random suffix: unique across processes sharing a cache (uuid4 draws from os.urandom, not a seeded RNG)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(temp)
        try:
            os.replace(temp, path)
        except OSError:
            if temp.is_dir() and path.is_dir():  # another process won the race
                return False
            raise
        return True
    finally:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)


def write_json_atomically(path: Path, payload: Any) -> None:
    """Write `payload` as indented JSON (tensors and numpy scalars as numbers, anything else as text)."""
    text = json.dumps(payload, indent=2, default=_jsonable) + "\n"
    replace_atomically(path, lambda temp: temp.write_text(text))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append one JSON line per row (append-only: a kill loses at most the line being written)."""
    with open(path, "a") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def rewind_selections(path: Path, keep_before_step: int) -> int:
    """Drop lines of steps >= `keep_before_step` (they will be redone after a resume); returns kept."""
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] < keep_before_step:
                kept.append(line)
        except (ValueError, KeyError):  # a line cut short by a kill
            continue
    replace_atomically(path, lambda temp: temp.write_text("".join(f"{line}\n" for line in kept)))
    return len(kept)
