"""One LASeR iteration (LinUCB picks ONE of K RMs) vs the score ensemble (all K RMs score), K=4 RMs of
equal size: four untrained Llama sequence classifiers (laser.tiny.build_untrained_classifier) in a
RewardModelPool, and the tiny policy, all built locally. An iteration is the module's step: contexts,
decision, n samples per prompt (one generate call), scoring by the chosen RMs (laser.step.scoring),
preference pairs, one DPO (+NLL) step, bandit update.

Phase times, measured alone: G = generate n samples for the batch, R = one RM scoring all responses,
T = one DPO step on the pairs. LASeR costs ~G+T+R, the ensemble ~G+T+K*R.

    python benchmarks/rm_cost.py                      # RM hidden 256, 4 layers
    python benchmarks/rm_cost.py --rm-hidden 1024     # bigger RMs: scoring dominates the iteration

Targets: RM-scoring ratio (LASeR / ensemble) <= 1/K + 5%; whole-iteration ratio <= 0.5 where RM scoring
dominates, i.e. where K*R is at least K/(2K-2) of the ensemble iteration (2/3 for K=4), which is when
the limit (G+T+R)/(G+T+K*R) is <= 0.5 at all.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile

from _common import adamw, dpo_step, header, load_note, median_time, median_times, tiny_policy, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=4, help="RMs in the pool")
    parser.add_argument("--rm-hidden", type=int, default=256, help="RM width (cost ~ hidden^2)")
    parser.add_argument("--rm-layers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per batch")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--pairs-per-prompt", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64, help="policy width")
    parser.add_argument("--layers", type=int, default=2, help="policy depth")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header(args.threads)

    import torch

    from laser.rewards.base import ScoringBatch
    from laser.rewards.classifier import ClassifierRM
    from laser.rewards.pool import RewardModelPool
    from laser.selection.base import StepFeedback
    from laser.selection.context import LastTokenContext
    from laser.selection.linucb import LinUCB
    from laser.selection.score_ensemble import ScoreEnsemble
    from laser.step.decisions import decide
    from laser.step.pairs import build_preference_pairs
    from laser.step.scoring import score_decisions
    from laser.tiny import build_untrained_classifier

    torch.manual_seed(0)
    cache = tempfile.mkdtemp(prefix="laser-bench-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)  # the tiny models are not kept
    policy, task = tiny_policy(cache, args.hidden, args.layers, args.max_new_tokens)
    policy.model.get_base_model().generation_config.min_new_tokens = args.max_new_tokens  # fixed work
    rms = {f"rm{k}": ClassifierRM(build_untrained_classifier(cache, args.rm_hidden, args.rm_layers, seed=k),
                                  batch_size=64, max_length=256, use_chat_template=False) for k in range(args.k)}
    pool = RewardModelPool(rms)
    batch = task.train_examples()[: args.prompts]
    prompts = [task.format_prompt(e) for e in batch]
    enc = policy.encode(prompts)
    n, encoder = args.n, LastTokenContext()
    optimiser = adamw(policy, 5e-6)  # the paper's lr: the policy barely moves, so every timed iteration samples alike
    samples = policy.sample(enc, n)
    scoring = ScoringBatch([prompts[i // n] for i in range(len(samples.texts))], samples.texts,
                           [batch[i // n] for i in range(len(samples.texts))], task)
    pool.score(range(args.k), scoring)  # load every RM before timing
    rm_params = sum(p.numel() for p in pool[0].model.parameters())
    print(f"policy {sum(p.numel() for p in policy.parameters()):,} params; K={args.k} RMs of {rm_params:,} params "
          f"(hidden {args.rm_hidden}, {args.rm_layers} layers); {args.prompts} prompts x n={n} = "
          f"{len(samples.texts)} responses of {args.max_new_tokens} tokens, {args.pairs_per_prompt} pairs/prompt")

    def train_on(scores) -> float:
        responses = [[tuple(samples.response_ids[p * n + j]) for j in range(n)] for p in range(len(batch))]
        pairs = build_preference_pairs(scores, args.pairs_per_prompt, responses=responses)
        prompt_ids = policy.unpadded_prompt_ids(enc)
        return dpo_step(policy, optimiser, [prompt_ids[p] for p, _, _ in pairs],
                        [samples.response_ids[p * n + c] for p, c, _ in pairs],
                        [samples.response_ids[p * n + r] for p, _, r in pairs])

    fixed_scores = pool.score([0], scoring)[0].view(len(batch), n)
    G = median_time(lambda: policy.sample(enc, n), args.warmup, args.repeats)
    R = median_time(lambda: pool.score([0], scoring), args.warmup, args.repeats)
    T = median_time(lambda: train_on(fixed_scores), args.warmup, args.repeats)

    def scoring(selector):  # scoring as the module does it, for this selector's decision
        decisions = decide(selector, encoder(policy, enc, prompts))
        return lambda: score_decisions(pool, selector, decisions, batch, prompts, samples.texts, n, task)

    def iteration(selector):
        def run() -> None:
            nonlocal samples
            decisions = decide(selector, encoder(policy, enc, prompts))
            samples = policy.sample(enc, n)
            scores, per_arm = score_decisions(pool, selector, decisions, batch, prompts, samples.texts, n, task)
            loss = train_on(scores)
            selector.update(decisions[0].selection, decisions[0].context, 1.0 / (1.0 + loss),
                            StepFeedback(per_arm, []))
        return run

    laser, ensemble = LinUCB(args.k, seed=0), ScoreEnsemble(args.k)
    s = median_times({"laser": scoring(laser), "ensemble": scoring(ensemble)}, args.warmup, args.repeats)
    it = median_times({"laser": iteration(laser), "ensemble": iteration(ensemble)}, args.warmup, args.repeats)
    s_laser, s_ensemble, it_laser, it_ensemble = s["laser"], s["ensemble"], it["laser"], it["ensemble"]

    K = args.k
    print(f"phase times (median of {args.repeats}): G generate {G * 1e3:.1f} ms | T DPO step {T * 1e3:.1f} ms | "
          f"R one RM scoring {R * 1e3:.1f} ms")
    print("LASeR and ensemble below were timed in turn (round-robin), each the median of its repeats")
    print(f"RM scoring per iteration: LASeR {s_laser * 1e3:.1f} ms | ensemble {s_ensemble * 1e3:.1f} ms")
    print(f"whole iteration         : LASeR {it_laser * 1e3:.1f} ms | ensemble {it_ensemble * 1e3:.1f} ms")
    scoring_ratio, whole_ratio = s_laser / s_ensemble, it_laser / it_ensemble
    limit = (G + T + R) / (G + T + K * R)
    share, needed = K * R / (G + T + K * R), K / (2 * K - 2)
    print(f"RM-scoring ratio (LASeR / ensemble): {scoring_ratio:.3f}   (1/K = {1 / K:.3f})")
    print(f"whole-iteration ratio (LASeR / ensemble): {whole_ratio:.3f}   limit (G+T+R)/(G+T+K*R) = {limit:.3f}")
    dominates = share >= needed
    print(f"RM scoring share of the ensemble iteration K*R/(G+T+K*R) = {share:.1%}; dominates "
          f"(>= {needed:.1%}, limit <= 0.5): {'yes' if dominates else 'no'}")
    verdict(f"RM-scoring ratio <= 1/K + 5% = {1 / K + 0.05:.3f} (measured {scoring_ratio:.3f})",
            scoring_ratio <= 1 / K + 0.05)
    target = f"whole-iteration ratio <= 0.5 where RM scoring dominates (measured {whole_ratio:.3f})"
    if dominates:
        verdict(target, whole_ratio <= 0.5)
    else:
        print(f"target: {target} -> N/A (scoring is {share:.1%} < {needed:.1%} here: a larger --rm-hidden makes it dominate)")
    verdict(f"whole-iteration ratio within 0.05 of its limit {limit:.3f} (measured {whole_ratio:.3f})",
            whole_ratio <= limit + 0.05)
    load_note()
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
