"""Peak memory of one DPO step: the reference as the policy with its LoRA adapter disabled (laser's
Policy.response_logps(reference=True)) vs a deep-copied reference model (TRL's separate ref_model).

What is measured: peak resident set size (Linux VmHWM, read from /proc/self/status), in a fresh child
process per variant, so neither inherits the other's allocator state. After the policy (and the copy)
are built and one warm-up step has run, the peak is reset (`echo 5 > /proc/self/clear_refs`) and
`--steps` more steps run; their peak is reported in full and above the RSS the process had after its
imports (Python + torch + transformers, the same for both: the analogue of a GPU's allocated memory).
Not torch allocations (torch has no CPU allocator statistics) and not tracemalloc (it misses tensors).

The model is a Llama built locally with random float32 weights, ~100M parameters by default, and a
small batch, so that weights dominate the step's memory as they do at 8B.

    python benchmarks/memory.py
    python benchmarks/memory.py --hidden 1024 --layers 16 --pairs 4      # ~230M parameters, more activations

Target: peak (above imports) with the disabled adapter / with a copied reference <= 0.6.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import count_params, header, llama_config, load_note, random_pairs, verdict

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])  # the paper's


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def child(variant: str, folder: str, pairs: int, seq: int, steps: int, threads: int, checkpointing: bool) -> None:
    """One variant in this process; prints a JSON line of KB figures."""
    import copy
    import ctypes

    import torch

    torch.set_num_threads(threads)
    from _common import adamw, dpo_step

    from laser.policy.logps import sequence_logps
    from laser.policy.policy import Policy

    rss_imports = status_kb("VmRSS")
    policy = Policy(folder, lora=LORA, activation_checkpointing=checkpointing)
    reference_logps = None
    if variant == "copy":  # a second full set of weights: the adapter-free copy of the policy
        reference = copy.deepcopy(policy.model).merge_and_unload().eval().requires_grad_(False)

        @torch.no_grad()
        def reference_logps(prompts, responses):
            rows = [p + r for p, r in zip(prompts, responses, strict=True)]  # equal lengths here: no padding
            ids = torch.tensor(rows)
            mask = torch.zeros_like(ids)
            mask[:, len(prompts[0]):] = 1
            keep = ids.shape[1] - len(prompts[0]) + 1  # logits for the responses only, as Policy.response_logps
            positions = torch.arange(ids.shape[1] - keep, ids.shape[1])  # as a tensor, as Policy.response_logps
            return sequence_logps(reference(input_ids=ids, logits_to_keep=positions).logits, ids[:, -keep:],
                                  mask[:, -keep:])

    vocab = policy.model.get_input_embeddings().num_embeddings
    p, c, r = random_pairs(vocab, pairs, seq, seq)
    optimiser = adamw(policy)
    dpo_step(policy, optimiser, p, c, r, reference_logps=reference_logps)  # warm-up: Adam state, allocator
    try:  # hand freed heap back to the OS (glibc), so both variants start the measured steps alike
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    rss_steady = status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    for _ in range(steps):
        dpo_step(policy, optimiser, p, c, r, reference_logps=reference_logps)
    print(json.dumps({"imports": rss_imports, "steady": rss_steady, "peak": status_kb("VmHWM")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--pairs", type=int, default=1, help="pairs per step (activations grow linearly)")
    parser.add_argument("--seq", type=int, default=32, help="prompt and response tokens each")
    parser.add_argument("--steps", type=int, default=3, help="measured steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["adapter", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.model_dir, args.pairs, args.seq, args.steps, args.threads, args.checkpointing)
    header(args.threads)
    from _common import save_random_llama

    config = llama_config(args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                          num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.heads)
    params = count_params(config)
    print(f"model: Llama, {params / 1e6:.1f}M parameters float32 = {params * 4 / 2**20:.0f} MiB of weights "
          f"(hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}); LoRA r16 q/v; "
          f"{args.pairs} pairs of {args.seq}+{args.seq} tokens; peak over {args.steps} steps after 1 warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_random_llama(Path(tmp) / "model", config)
        for checkpointing in (False, True):
            results = {}
            for variant in ("adapter", "copy"):
                cmd = [sys.executable, __file__, "--child", variant, "--model-dir", folder, "--pairs",
                       str(args.pairs), "--seq", str(args.seq), "--steps", str(args.steps), "--threads",
                       str(args.threads)] + (["--checkpointing"] if checkpointing else [])
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                results[variant] = json.loads(out.strip().splitlines()[-1])
            report(results, "policy.activation_checkpointing=" + str(checkpointing).lower())
    load_note()


def report(results: dict[str, dict[str, int]], mode: str) -> None:
    """The two variants' figures in MiB, the ratio and its verdict."""
    mib = {v: {k: kb / 1024 for k, kb in r.items()} for v, r in results.items()}
    print(f"-- {mode}")
    for name, label in (("adapter", "reference = disabled adapter (laser)"), ("copy", "reference = deep copy")):
        m = mib[name]
        print(f"{label:38s}: peak RSS {m['peak']:7.0f} MiB | above imports {m['peak'] - m['imports']:7.0f} MiB | "
              f"after imports {m['imports']:5.0f} MiB | steady before the steps {m['steady']:6.0f} MiB")
    a, c = mib["adapter"], mib["copy"]
    print(f"breakdown: resident before the steps above imports: adapter {a['steady'] - a['imports']:.0f} MiB, "
          f"copy {c['steady'] - c['imports']:.0f} MiB (the copy adds {c['steady'] - a['steady']:.0f}); step transient "
          f"(peak - steady): adapter {a['peak'] - a['steady']:.0f} MiB, copy {c['peak'] - c['steady']:.0f} MiB")
    full = a["peak"] / c["peak"]
    above = (a["peak"] - a["imports"]) / (c["peak"] - c["imports"])
    print(f"ratio adapter / copy: peak RSS above imports {above:.3f} | whole-process peak RSS {full:.3f}")
    verdict(f"{mode}: peak DPO-step memory (RSS above imports) adapter / copy <= 0.6 (measured {above:.3f})",
            above <= 0.6)


if __name__ == "__main__":
    main()
