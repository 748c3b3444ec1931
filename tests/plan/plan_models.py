"""Small real models for the plan's tests: a tiny Llama saved as a Hugging Face folder (no hub)."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_llama_folder(folder: Path, hidden_size: int = 64, num_layers: int = 4, num_heads: int = 4) -> str:
    """A randomly initialised Llama with a byte-level tokenizer, saved to `folder`."""
    from transformers import LlamaForCausalLM

    from laser.tiny import build_tokenizer, save_model_folder, tiny_llama_config

    if not (folder / "config.json").exists():
        tokenizer = build_tokenizer(["the quick brown fox jumps over the lazy dog 0123456789"] * 10, vocab_size=300)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), hidden_size, num_layers, num_heads))
        save_model_folder(folder, model, tokenizer)
    return str(folder)
