"""What the benchmark scripts share: the header they print, a median timer, the verdict line, locally
built policies (no hub) and one DPO step exactly as `laser.step.module.LaserModule` takes it.

Not a benchmark itself; each `benchmarks/<name>.py` imports it (the repo root is put on sys.path, so
the scripts run as `python benchmarks/<name>.py` without installing the package).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # the figures, not load/save progress bars
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore", category=FutureWarning)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from laser.step.losses import dpo_loss, nll_loss  # noqa: E402

SMOLLM_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3, vocab_size=49152)  # SmolLM-135M's shape: hidden 576 = the d=576 context
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)


def header(threads: int) -> None:
    """Set the thread count and print the command and the machine."""
    torch.set_num_threads(threads)
    print("command: python " + " ".join(sys.argv))
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"CPUs {os.cpu_count()} | torch {torch.__version__} | device cpu | torch threads {threads}")


def median_time(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median wall seconds of `repeats` calls of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_times(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Like `median_time` for several variants, called in turn (round-robin), so that load from other
    processes on a shared machine falls on every variant alike instead of on whichever ran last."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def load_note() -> None:
    """Print the 1-minute load average: on a shared machine the absolute times move, ratios less."""
    if hasattr(os, "getloadavg"):
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


def verdict(target: str, ok: bool) -> bool:
    print(f"target: {target} -> {'PASS' if ok else 'FAIL'}")
    return ok


def llama_config(vocab_size: int, **shape):
    """A LlamaConfig with pad 0 / bos 1 / eos 2 (the ids of `laser.tiny.build_tokenizer`)."""
    from transformers import LlamaConfig

    return LlamaConfig(max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                       **{"vocab_size": vocab_size, "tie_word_embeddings": True, **shape})


def count_params(config) -> int:
    """Parameters of a causal LM with this config (built on the meta device: no memory, no time)."""
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        return sum(p.numel() for p in LlamaForCausalLM(config).parameters())


def save_random_llama(folder: Path, config, seed: int = 0) -> str:
    """A randomly initialised Llama with a bytes-only tokenizer, saved as a Hugging Face folder."""
    from transformers import LlamaForCausalLM

    from laser.tiny import build_tokenizer

    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    build_tokenizer([], vocab_size=300).save_pretrained(folder)
    return str(folder)


def tiny_policy(cache_dir: str, hidden: int = 64, layers: int = 2, max_new_tokens: int = 32, **lora):
    """The embedded default policy (laser.tiny on the arithmetic task, untrained) and its task."""
    from laser.policy.policy import Policy
    from laser.tasks.arithmetic import Arithmetic
    from laser.tiny import build_tiny_causal_lm

    task = Arithmetic()
    folder = build_tiny_causal_lm(cache_dir, task, hidden_size=hidden, num_layers=layers)
    lora = lora or dict(r=8, lora_alpha=16, lora_dropout=0.0,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return Policy(folder, lora=lora, max_new_tokens=max_new_tokens, temperature=1.0), task


def random_pairs(vocab: int, pairs: int, prompt_len: int, response_len: int, seed: int = 0):
    """`pairs` (prompt, chosen, rejected) token-id lists of fixed lengths (ids >= 3: no special tokens)."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[list[int]]:
        return torch.randint(3, vocab, (pairs, n), generator=g).tolist()

    return ids(prompt_len), ids(response_len), ids(response_len)


def dpo_step(policy, optimiser, prompt_ids, chosen, rejected, beta: float = 0.1, nll_weight: float = 1.0,
             reference_logps: Callable | None = None) -> float:
    """One DPO (+NLL) step as LaserModule takes it: policy and reference log-probs of chosen + rejected
    in one concatenated forward each, the loss, backward, grad-norm clip 1.0, AdamW step.
    `reference_logps(prompts, responses)` replaces the adapter-disabled reference (memory.py's copy)."""
    count = len(chosen)
    prompts, responses = prompt_ids * 2, chosen + rejected
    if reference_logps is None:  # the reference first, as LaserModule does
        ref = policy.response_logps(prompts, responses, reference=True)
    else:
        ref = reference_logps(prompts, responses)
    policy_logps = policy.response_logps(prompts, responses)
    out = dpo_loss(policy_logps[:count], policy_logps[count:], ref[:count], ref[count:], beta=beta)
    lengths = torch.tensor([len(c) for c in chosen])
    loss = (out.losses + nll_weight * nll_loss(policy_logps[:count], lengths)).mean()
    optimiser.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], 1.0)
    optimiser.step()
    return float(loss.detach())


def adamw(policy, lr: float = 5e-6) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr)
