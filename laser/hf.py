"""Loading Hugging Face models (tokenizer + model) from a hub id or a local folder, with one-line errors.

Shared by the policy and the HF reward models (which load lazily, on their first `score` call, so
that a pool of several 7B RMs costs nothing until the bandit picks one).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from laser.errors import LaserConfigError

_EXPECTED = "a local folder with config.json or a hub id"
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_model_path(name_or_path: str) -> str:
    """A hub id unchanged, or a local folder expanded (`~`). A string that looks like a path
    (starts with '/', '.', '~', or exists) must be an existing folder with a config.json."""
    expanded = os.path.expanduser(str(name_or_path))
    looks_local = str(name_or_path).startswith(("/", ".", "~")) or os.path.exists(expanded)
    if not looks_local:
        return str(name_or_path)
    if not os.path.isdir(expanded):
        raise LaserConfigError(f"model path {name_or_path!r} does not exist: expected {_EXPECTED}")
    return expanded


def resolve_dtype(dtype: str) -> torch.dtype:
    """The torch dtype for a config string such as "bfloat16"."""
    if str(dtype) not in DTYPES:
        raise LaserConfigError(f"unknown dtype {dtype!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[str(dtype)]


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """An `AutoTokenizer` that can pad: one without a pad token pads with its eos token."""
    from transformers import AutoTokenizer  # deferred: importing transformers costs seconds

    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as error:  # any failure means the same to the user
        raise LaserConfigError(
            f"could not load a tokenizer from {name_or_path!r} ({_EXPECTED}): {_first_line(error)}"
        ) from error
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise LaserConfigError(f"tokenizer {name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    auto_class: Any,
    name_or_path: str,
    dtype: str,
    device: str | torch.device,
    pad_token_id: int | None,
    trust_remote_code: bool = False,
    allow_pickle_weights: bool = False,
) -> Any:
    """`auto_class.from_pretrained(...)` on `device`, in eval mode, with `config.pad_token_id` set
    (sequence classifiers find each row's last token through it).

    Weights load from safetensors only: a pickled `.bin` checkpoint can run arbitrary code when
    loaded, so it is refused unless `allow_pickle_weights` is set for that model. Model code from
    the hub runs only with `trust_remote_code`."""
    path = resolve_model_path(name_or_path)
    torch_dtype = resolve_dtype(dtype)
    try:
        model = auto_class.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                           use_safetensors=None if allow_pickle_weights else True)
    except Exception as error:
        if not allow_pickle_weights and _only_pickle_weights(path):
            raise LaserConfigError(
                f"{name_or_path!r} has only pickled (.bin) weights, which can run code when loaded; convert them to "
                f"safetensors, or set allow_pickle_weights: true for this model if you trust it") from error
        raise LaserConfigError(
            f"could not load {auto_class.__name__} from {name_or_path!r} ({_EXPECTED}): {_first_line(error)}"
        ) from error
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model.to(device).eval()


def _only_pickle_weights(path: str) -> bool:
    """True for a local folder with .bin weights and no .safetensors file."""
    folder = os.path.expanduser(str(path))
    if not os.path.isdir(folder):
        return False
    names = os.listdir(folder)
    return any(n.endswith(".bin") for n in names) and not any(n.endswith(".safetensors") for n in names)


def chat_text(tokenizer: Any, prompt: str, response: str | None, use_chat_template: bool) -> str | None:
    """The chat-formatted text of a user prompt (plus the assistant's response when given), or
    None when chat formatting is off or the tokenizer has no chat template."""
    if not (use_chat_template and getattr(tokenizer, "chat_template", None)):
        return None
    messages = [{"role": "user", "content": prompt}]
    if response is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": response})
    return tokenizer.apply_chat_template(messages, tokenize=False)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def load_causal_lm(name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False,
                   device: str | torch.device = "cpu", pad_token_id: int | None = None,
                   allow_pickle_weights: bool = False) -> Any:
    """A causal LM (e.g. a policy) in train mode on `device`."""
    from transformers import AutoModelForCausalLM

    model = load_model(AutoModelForCausalLM, name_or_path, dtype, device, pad_token_id, trust_remote_code,
                       allow_pickle_weights)
    return model.train()
