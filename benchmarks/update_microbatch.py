"""The LASeR update before and after micro-batching with shared responses, in one run: step time at the paper's
pair structure, and peak memory as the pairs per step grow at a fixed micro-batch.

The pair structure is the paper's: n samples per prompt, the top-scored response paired with `pairs_per_prompt`
lower-scored ones (`build_preference_pairs` on random scores), so each prompt's chosen response is in every one
of its pairs. Prompts and responses are random token ids; response lengths vary (half to full length).

- before: the update as it was (reconstructed here): every pair's chosen and rejected through one reference
  forward and one policy forward with grad (2 x pairs sequences), the DPO+NLL loss, backward; log-probs by
  autograd's logsumexp over float32 rows (the old `sequence_logps`, patched in).
- after: `laser.step.preference.preference_loss` + `.backward`: each distinct response once (1 + pairs per
  prompt sequences), `laser.micro_batch_size` null (one micro-batch, the default) or `--micro-batch`.
Both end with grad-norm clipping and an AdamW step. The script checks that both give the same gradient.

Step time: median over `--repeats` after `--warmup`, variants called in turn (round-robin). Peak memory: the
peak bytes of the tensors a step allocates and holds at once (a TorchDispatchMode that counts each new tensor
storage until it is freed): what `torch.cuda.max_memory_allocated` would show above the weights and optimiser
state, without allocator caching, fragmentation or Python's RSS. Not RSS (at these sizes its noise exceeds
the differences), not tracemalloc (blind to tensor storage), not torch's MemTracker (it refuses LoRA's frozen
parameters). Measured once per variant, after the timed steps (it is deterministic).

    python benchmarks/update_microbatch.py
    python benchmarks/update_microbatch.py --prompts 16 --samples 30 --pairs-per-prompt 10   # the paper's batch

Targets: after (null) >= 1.5x faster than before at 10 pairs per prompt; after (--micro-batch) peak memory
within 10% when the pairs per step grow `--grow` x (4x).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import shutil
import tempfile
from pathlib import Path

from _common import adamw, header, llama_config, load_note, median_times, save_random_llama, verdict

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])


def old_sequence_logps(logits, labels, loss_mask):
    """`laser.policy.logps.sequence_logps` before this change: autograd's logsumexp over float32 rows."""
    import torch

    logits, labels = logits[:, :-1, :], labels[:, 1:]
    compute_dtype = torch.promote_types(logits.dtype, torch.float32)
    mask = loss_mask[:, 1:].to(compute_dtype)
    picked = torch.gather(logits, 2, labels.unsqueeze(-1)).squeeze(-1).to(compute_dtype)
    normaliser = torch.stack([torch.logsumexp(row.to(compute_dtype), dim=-1) for row in logits])
    return ((picked - normaliser) * mask).sum(-1)


@contextlib.contextmanager
def old_logps():
    import laser.policy.policy as module

    new, module.sequence_logps = module.sequence_logps, old_sequence_logps
    try:
        yield
    finally:
        module.sequence_logps = new


def make_batch(prompts: int, samples: int, pairs_per_prompt: int, prompt_len: int, response_len: int, vocab: int,
               seed: int):
    """Random prompts and n responses per prompt (ids >= 3), and the paper's pairs built from random scores."""
    import torch

    from laser.step.pairs import build_preference_pairs

    g = torch.Generator().manual_seed(seed)
    prompt_ids = [torch.randint(3, vocab, (prompt_len,), generator=g).tolist() for _ in range(prompts)]
    lengths = torch.randint(response_len // 2, response_len + 1, (prompts * samples,), generator=g).tolist()
    response_ids = [torch.randint(3, vocab, (k,), generator=g).tolist() for k in lengths]
    pairs = build_preference_pairs(torch.rand(prompts, samples, generator=g), pairs_per_prompt)
    return prompt_ids, response_ids, pairs


def before_backward(policy, loss, prompt_ids, response_ids, pairs, n) -> float:
    """The old update's loss and backward (no optimiser step); returns the mean loss."""
    import torch

    pair_prompts = [prompt_ids[p] for p, _, _ in pairs] * 2
    sides = [response_ids[p * n + c] for p, c, _ in pairs] + [response_ids[p * n + r] for p, _, r in pairs]
    with old_logps():
        reference = policy.response_logps(pair_prompts, sides, reference=True)
        logps = policy.response_logps(pair_prompts, sides)
    lengths = torch.tensor([float(len(s)) for s in sides])
    count = len(pairs)
    out = loss(logps[:count], logps[count:], reference[:count], reference[count:], lengths[:count], lengths[count:])
    mean = out.losses.mean()
    mean.backward()
    return float(mean.detach())


def after_backward(policy, loss, prompt_ids, response_ids, pairs, n, micro_batch_size) -> float:
    import torch

    from laser.step.preference import MicroBatching, preference_loss

    result = preference_loss(policy, prompt_ids, response_ids, pairs, n, loss, MicroBatching(micro_batch_size))
    result.backward(torch.Tensor.backward)
    return float(result.losses.mean())


def step(policy, optimiser, backward) -> None:
    """zero_grad, the variant's backward, clip 1.0, AdamW: one optimiser step, as LaserModule takes it."""
    import torch

    optimiser.zero_grad()
    backward()
    torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], 1.0)
    optimiser.step()


def peak_mib(policy, optimiser, backward) -> float:
    """Peak MiB of the tensors allocated during one step and still live (`LiveTensorBytes`)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveTensorBytes(TorchDispatchMode):
        """Bytes of the tensor storages that ops create while it is active, until each is freed, and their peak:
        torch.cuda.max_memory_allocated's figure for the CPU (torch's MemTracker refuses frozen parameters)."""

        def __init__(self) -> None:
            super().__init__()
            self.live, self.peak, self.sizes = 0, 0, {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    storage = tensor.untyped_storage()
                    key = storage.data_ptr()
                    if key and key not in self.sizes:  # a new storage (views and in-place ops share one)
                        self.sizes[key] = storage.nbytes()
                        self.live += storage.nbytes()
                        self.peak = max(self.peak, self.live)
                        weakref.finalize(storage, self.free, key)
            return out

        def free(self, key: int) -> None:
            self.live -= self.sizes.pop(key, 0)

    import weakref

    import torch

    tracker = LiveTensorBytes()
    with tracker:
        step(policy, optimiser, backward)
    return tracker.peak / 2**20


def gradient(policy, backward):
    import torch

    trainable = [p for p in policy.parameters() if p.requires_grad]
    for p in trainable:
        p.grad = None
    loss = backward()
    return loss, torch.cat([p.grad.flatten().float() for p in trainable])


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--samples", type=int, default=16, help="responses per prompt (paper: 30)")
    parser.add_argument("--pairs-per-prompt", type=int, default=10, help="paper: 10")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--response-len", type=int, default=48, help="longest response; lengths vary from half")
    parser.add_argument("--micro-batch", type=int, default=8, help="laser.micro_batch_size of the memory check")
    parser.add_argument("--grow", type=int, default=4, help="pairs per step grow this many times (more prompts)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192, help="the logits' width: what the old backward copied")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="weights and logits; bfloat16 shows the float32 copy the old backward kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    a = arguments()
    header(a.threads)
    from laser.policy.policy import Policy
    from laser.step.losses import DPOLoss
    from laser.step.microbatch import distinct_sequences

    config = llama_config(a.vocab, hidden_size=a.hidden, intermediate_size=2 * a.hidden, num_hidden_layers=a.layers,
                          num_attention_heads=a.heads, num_key_value_heads=a.heads)
    scratch = tempfile.mkdtemp(prefix="laser-bench-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # the random model is not kept
    folder = save_random_llama(Path(scratch), config)
    policy = Policy(folder, lora=LORA, dtype=a.dtype)
    policy.model.train()
    optimiser, loss, n = adamw(policy), DPOLoss(beta=0.1, nll_weight=1.0), a.samples
    batch = make_batch(a.prompts, n, a.pairs_per_prompt, a.prompt_len, a.response_len, a.vocab, seed=0)
    grown = make_batch(a.prompts * a.grow, n, a.pairs_per_prompt, a.prompt_len, a.response_len, a.vocab, seed=1)
    pairs, distinct = len(batch[2]), len(distinct_sequences(*batch, n))
    print(f"policy: Llama hidden {a.hidden}, {a.layers} layers, vocab {a.vocab}, {a.dtype}, LoRA r16 on q,v | "
          f"{a.prompts} prompts x {n} samples, {a.pairs_per_prompt} pairs per prompt = {pairs} pairs | "
          f"prompt {a.prompt_len} + response {a.response_len // 2}-{a.response_len} tokens")
    print(f"sequences per step: before {2 * pairs} (chosen + rejected of every pair), after {distinct} distinct")

    def before(data=batch):
        return lambda: before_backward(policy, loss, *data, n)

    def after(size, data=batch):
        return lambda: after_backward(policy, loss, *data, n, size)

    (loss_before, grad_before), (loss_after, grad_after) = gradient(policy, before()), gradient(policy, after(None))
    _, grad_micro = gradient(policy, after(a.micro_batch))
    relative = max((g - grad_before).norm() / grad_before.norm() for g in (grad_after, grad_micro))
    print(f"same work: mean loss before {loss_before:.6f} / after {loss_after:.6f}; "
          f"gradient |after - before| / |before| <= {float(relative):.1e} (null and micro-batch {a.micro_batch})")

    variants = {"before": before(), "after (micro_batch_size null)": after(None),
                f"after (micro_batch_size {a.micro_batch})": after(a.micro_batch)}
    times = median_times({k: (lambda b=b: step(policy, optimiser, b)) for k, b in variants.items()}, a.warmup,
                         a.repeats)
    for name, seconds in times.items():
        print(f"step time {name:<32}: {seconds * 1000:9.1f} ms  ({times['before'] / seconds:.2f}x before's speed)")
    builders = {"before": lambda d: before(d), "after (micro_batch_size null)": lambda d: after(None, d),
                f"after (micro_batch_size {a.micro_batch})": lambda d: after(a.micro_batch, d)}
    memory = {name: [peak_mib(policy, optimiser, build(data)) for data in (batch, grown)]
              for name, build in builders.items()}
    for name, (low, high) in memory.items():
        print(f"peak tensor memory of a step, {name:<32}: {pairs} pairs {low:8.1f} MiB | "
              f"{pairs * a.grow} pairs {high:8.1f} MiB | ratio {high / low:.2f}")
    speedup = times["before"] / times["after (micro_batch_size null)"]
    low, high = memory[f"after (micro_batch_size {a.micro_batch})"]
    growth = high / low
    load_note()
    verdict(f"after (micro_batch_size null) >= 1.5x before's step speed at {a.pairs_per_prompt} pairs per prompt "
            f"(measured {speedup:.2f}x)", speedup >= 1.5)
    verdict(f"after (micro_batch_size {a.micro_batch}) peak memory within 10% when pairs per step grow {a.grow}x "
            f"(measured {growth:.2f}x)", growth <= 1.10)
    tolerance = 1e-4 if a.dtype == "float32" else 5e-2  # bfloat16: the rounding of different batch shapes
    verdict(f"same gradient as before within {tolerance:g} relative (measured {float(relative):.1e})",
            relative <= tolerance)


if __name__ == "__main__":
    main()
