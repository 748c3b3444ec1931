"""LinUCB's cost per LASeR step (one select + one update, K=4 arms, random unit contexts) at d=576 and
d=4096, against (a) the authors' approach, which re-inverts every arm's A_k (torch.linalg.inv, float64
like laser's) at every selection, and (b) one DPO step of a policy:
  - the tiny default policy (measured);
  - a SmolLM-135M-shaped policy (hidden 576: the model whose last-token context IS d=576; measured);
  - a Llama-3-8B-shaped policy (hidden 4096: d=4096) ESTIMATED as the measured 135M step x the parameter
    ratio (a DPO step's FLOPs ~ parameters x tokens; an 8B step does not fit this machine).
Also timed: the same LinUCB maths with one batched mat-vec pass per select and in-place rank-one updates
(not laser's code: it shows the headroom).

    python benchmarks/bandit_overhead.py
    python benchmarks/bandit_overhead.py --dims 576 1024 4096 --pairs 8 --seq 256   # bigger DPO step

Targets: laser's LinUCB >= 100x faster than re-inverting, and <= 1% of the DPO step of the policy whose
hidden size is d (135M-shaped for 576, 8B-shaped estimate for 4096); the tiny-step ratio is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from _common import (
    LLAMA3_8B,
    SMOLLM_135M,
    adamw,
    count_params,
    dpo_step,
    header,
    llama_config,
    load_note,
    median_time,
    random_pairs,
    save_random_llama,
    tiny_policy,
    verdict,
)


def unit_contexts(d: int, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(count, d, generator=g, dtype=torch.float64), dim=1)


class ReinvertingLinUCB:
    """The authors' LinUCB: A_k and b_k only; every select inverts each A_k from scratch."""

    def __init__(self, k: int, d: int, alpha: float = 0.1):
        self.A, self.b, self.alpha = torch.eye(d, dtype=torch.float64).repeat(k, 1, 1), torch.zeros(k, d).double(), alpha

    def select(self, x) -> int:
        scores = []
        for A, b in zip(self.A, self.b, strict=True):
            A_inv = torch.linalg.inv(A)
            scores.append(float((A_inv @ b) @ x + self.alpha * (x @ A_inv @ x).sqrt()))
        return max(range(len(scores)), key=scores.__getitem__)

    def update(self, arm: int, x, reward: float) -> None:
        self.A[arm] += x[:, None] * x[None, :]
        self.b[arm] += reward * x


def one_pass_select_update(A_inv, b, x, alpha: float, reward: float) -> int:
    """LinUCB select + update reading A_inv once: u_k = A_k^-1 x gives both theta_k.x = b_k.u_k (A^-1 is
    symmetric) and x^T A_k^-1 x = x.u_k; Sherman-Morrison in place with the chosen arm's u."""
    u = (A_inv @ x.unsqueeze(-1)).squeeze(-1)  # K x d
    arm = int(((b * u).sum(-1) + alpha * (u @ x).clamp_min(0).sqrt()).argmax())
    A_inv[arm].addr_(u[arm], u[arm], alpha=-1.0 / (1.0 + float(x @ u[arm])))
    b[arm].add_(x, alpha=reward)
    return arm


def policy_step_time(policy, pairs, prompt_len, seq, warmup, repeats) -> float:
    p, c, r = random_pairs(policy.model.get_input_embeddings().num_embeddings, pairs, prompt_len, seq)
    optimiser = adamw(policy)
    return median_time(lambda: dpo_step(policy, optimiser, p, c, r), warmup, repeats)


def measure_dim(d: int, args, t_tiny: float, t_small: float, t_8b: float) -> None:
    """Time laser's LinUCB, the one-pass maths and re-inverting at context dimension d; print the verdicts."""
    import time

    from laser.selection.linucb import LinUCB

    contexts = unit_contexts(d, args.warmup + args.repeats + 1, seed=d)
    laser, parts = LinUCB(args.k, alpha=0.1), {"select": [], "update": []}
    calls = iter(contexts)

    def laser_step() -> None:
        x = next(calls)
        start = time.perf_counter()
        selection = laser.select(x)
        middle = time.perf_counter()
        laser.update(selection, x, 0.5)
        parts["select"].append(middle - start)
        parts["update"].append(time.perf_counter() - middle)

    t_laser = median_time(laser_step, args.warmup, args.repeats)
    A_inv, b = laser.A_inv.clone(), laser.b.clone()
    fast = iter(unit_contexts(d, args.warmup + args.repeats, seed=d + 1))
    t_fast = median_time(lambda: one_pass_select_update(A_inv, b, next(fast), 0.1, 0.5), args.warmup, args.repeats)
    authors = ReinvertingLinUCB(args.k, d)
    slow = iter(unit_contexts(d, args.warmup + max(args.repeats, args.slow_repeats), seed=d + 2))
    reps, warm = (args.slow_repeats, 0) if d > 1024 else (args.repeats, args.warmup)
    t_inv = median_time(lambda: authors.update(authors.select(x := next(slow)), x, 0.5), warm, reps)
    select_ms, update_ms = (statistics.median(parts[k][args.warmup:]) * 1e3 for k in ("select", "update"))
    print(f"\nd={d}, K={args.k}: laser LinUCB select+update {t_laser * 1e3:.2f} ms (select {select_ms:.2f}, "
          f"update {update_ms:.2f}) | re-inverting {t_inv * 1e3:.1f} ms (median of {reps}) | "
          f"one-pass maths {t_fast * 1e3:.2f} ms")
    speedup = t_inv / t_laser
    print(f"  speedup vs re-inverting: laser {speedup:.1f}x, one-pass maths {t_inv / t_fast:.1f}x")
    print(f"  share of a DPO step: tiny {t_laser / t_tiny:.2%} | 135M-shaped {t_laser / t_small:.3%} | "
          f"8B-shaped estimate {t_laser / t_8b:.4%}")
    verdict(f"d={d}: laser LinUCB >= 100x faster than re-inverting (measured {speedup:.1f}x)", speedup >= 100)
    ref, ref_name = (t_small, "135M-shaped step, measured") if d <= 1024 else (t_8b, "8B-shaped step, estimated")
    verdict(f"d={d}: laser LinUCB <= 1% of a DPO step ({ref_name}: {t_laser / ref:.3%})", t_laser / ref <= 0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[576, 4096])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=2, help="pairs in the 135M DPO step (cost ~ linear)")
    parser.add_argument("--seq", type=int, default=64, help="prompt and response tokens each, 135M step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow-repeats", type=int, default=2, help="repeats of re-inverting at d > 1024 (~4 s/arm)")
    args = parser.parse_args()
    header(args.threads)

    from laser.policy.policy import Policy

    with tempfile.TemporaryDirectory() as cache:
        tiny, _ = tiny_policy(cache)
        config = llama_config(**SMOLLM_135M)
        folder = save_random_llama(Path(cache) / "smollm135m-shaped", config)
        small = Policy(folder, lora=dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    t_tiny = policy_step_time(tiny, 16, 12, 6, args.warmup, args.repeats)  # the default run's step
    t_small = policy_step_time(small, args.pairs, args.seq, args.seq, 1, 3)
    n_small, n_8b = count_params(config), count_params(llama_config(**LLAMA3_8B))
    t_8b = t_small * n_8b / n_small
    print(f"DPO step, tiny default policy (16 pairs, 12+6 tokens): {t_tiny * 1e3:.1f} ms (measured)")
    print(f"DPO step, SmolLM-135M-shaped ({n_small / 1e6:.0f}M params, LoRA r16 q/v, {args.pairs} pairs, "
          f"{args.seq}+{args.seq} tokens): {t_small * 1e3:.0f} ms (measured)")
    print(f"DPO step, Llama-3-8B-shaped ({n_8b / 1e9:.2f}B params, same pairs): {t_8b:.1f} s "
          f"(ESTIMATED = 135M step x {n_8b / n_small:.1f}, on this CPU)")
    del small

    for d in args.dims:
        measure_dim(d, args, t_tiny, t_small, t_8b)
    print("note: the 8B figure is a CPU step; on a GPU the step is far shorter while LinUCB stays on the CPU "
          "(benchmarks/gpu_check.sh prints LinUCB's share of a measured GPU step)")
    load_note()


if __name__ == "__main__":
    main()
