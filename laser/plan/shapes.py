"""The architecture of every model the plan traces, without its weights.

A model's shape is its `config.json` (hidden size, layers, heads, kv heads, intermediate size,
vocabulary). The plan reads it from, in order: a local folder (the model's own), the shapes shipped
in `laser/plan/shapes/<org>--<name>/config.json` (public facts about the paper's policy and RMs, so
no hub access is needed), the local Hugging Face cache, then the hub (one small file). A model found
nowhere is one clear line.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from laser.errors import LaserConfigError

SHAPES_DIR = Path(__file__).resolve().parent / "shapes"


def shipped_shapes() -> list[str]:
    """Hub ids whose shape ships with laser."""
    return sorted(p.parent.name.replace("--", "/", 1) for p in SHAPES_DIR.glob("*/config.json"))


def model_config(name_or_path: str, trust_remote_code: bool = False, hub_timeout_s: float = 10.0) -> Any:
    """The `transformers` config of a local folder or hub id, without loading any weights."""
    from transformers import AutoConfig

    folder = config_folder(str(name_or_path), hub_timeout_s)
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as error:  # a custom architecture without trust_remote_code, a broken file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise LaserConfigError(f"memory plan: cannot read the shape of {name_or_path!r} from {folder}: {first}") from None


def config_folder(name_or_path: str, hub_timeout_s: float = 10.0) -> str:
    """The folder holding `name_or_path`'s config.json (see the module docstring for the order)."""
    from laser.config.preflight import looks_local

    if looks_local(name_or_path):
        folder = os.path.expanduser(name_or_path)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise LaserConfigError(f"memory plan: {name_or_path!r} has no config.json (expected a model folder)")
        return folder
    shipped = SHAPES_DIR / name_or_path.replace("/", "--", 1) / "config.json"
    if shipped.is_file():
        return str(shipped.parent)
    cached = _hub_config_file(name_or_path, hub_timeout_s)
    if cached is None:
        raise LaserConfigError(
            f"memory plan: no shape for {name_or_path!r}: not a local folder, not shipped in laser/plan/shapes/ "
            f"({len(shipped_shapes())} models), not in the Hugging Face cache and the hub did not serve its config.json; "
            "give a local folder with its config.json, or add one under laser/plan/shapes/")
    return str(Path(cached).parent)


def _hub_config_file(repo_id: str, timeout_s: float) -> str | None:
    """config.json from the local Hugging Face cache, else from the hub (None when neither has it)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(cached, str):
            return cached
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            return None
        return hf_hub_download(repo_id, "config.json", etag_timeout=timeout_s)
    except Exception:  # malformed id, no network, gated or missing repo: all mean "no shape here"
        return None


def tiny_policy_config(tiny: dict[str, Any]) -> Any:
    """The shape of the locally built tiny policy (`policy=tiny`), from its config knobs."""
    from laser.tiny import tiny_llama_config

    return tiny_llama_config(int(tiny.get("vocab_size", 512)), int(tiny.get("hidden_size", 64)),
                             int(tiny.get("num_layers", 2)), int(tiny.get("num_heads", 4)))


def with_layers(config: Any, layers: int) -> Any:
    """A copy of `config` with `layers` decoder layers (per-layer lists cut to match)."""
    config = copy.deepcopy(config)
    config.num_hidden_layers = layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:layers]
    return config
