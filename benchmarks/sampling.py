"""n samples per prompt: one batched generate call (Policy.sample, num_return_sequences=n) vs n separate
generate calls over the same prompts (the authors' code). Same prompts, same sampling settings, and the
same token budget: EOS is suppressed until max_new_tokens (min_new_tokens), so every response has
exactly max_new_tokens tokens in both variants (the printed token counts check it).

    python benchmarks/sampling.py                               # tiny policy (hidden 64, 2 layers), n=8
    python benchmarks/sampling.py --hidden 512 --layers 8       # a bigger policy: per-call overhead matters less

Target: the batched call is >= 5x faster than n separate calls (n=8).
"""

from __future__ import annotations

import argparse
import tempfile

from _common import header, load_note, median_times, tiny_policy, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per batch")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64, help="policy width (tiny default: 64)")
    parser.add_argument("--layers", type=int, default=2, help="policy depth (tiny default: 2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header(args.threads)

    import torch

    with tempfile.TemporaryDirectory() as cache:
        policy, task = tiny_policy(cache, args.hidden, args.layers, args.max_new_tokens)
    policy.model.get_base_model().generation_config.min_new_tokens = args.max_new_tokens  # fixed budget
    prompts = [task.format_prompt(e) for e in task.train_examples()[: args.prompts]]
    enc = policy.encode(prompts)
    width = enc["input_ids"].shape[1]
    params = sum(p.numel() for p in policy.parameters())
    print(f"policy: {params:,} parameters (hidden {args.hidden}, {args.layers} layers); {args.prompts} prompts, "
          f"n={args.n}, max_new_tokens={args.max_new_tokens}, temperature {policy.temperature}")

    counted = {}

    def batched():  # the project: laser.policy.policy.Policy.sample, one generate call
        counted["batched"] = policy.sample(enc, args.n).num_generated_tokens

    @torch.no_grad()
    def separate():  # the authors' code: one generate call per sample index, same kwargs as Policy.sample
        policy.model.eval()
        tokens = 0
        for _ in range(args.n):
            out = policy.model.generate(
                **enc, max_new_tokens=args.max_new_tokens, num_return_sequences=1, do_sample=True,
                temperature=policy.temperature, top_p=policy.top_p,
                pad_token_id=policy.tokenizer.pad_token_id, eos_token_id=policy.tokenizer.eos_token_id,
            )
            tokens += out[:, width:].numel()
        policy.model.train()
        counted["separate"] = tokens

    torch.manual_seed(0)
    times = median_times({"batched": batched, "separate": separate}, args.warmup, args.repeats)
    t_batched, t_separate = times["batched"], times["separate"]
    print(f"generated tokens per variant: batched {counted['batched']}, separate {counted['separate']} "
          f"(budget {args.prompts * args.n * args.max_new_tokens})")
    print(f"one batched generate call : {t_batched * 1e3:9.1f} ms  "
          f"({counted['batched'] / t_batched:,.0f} tokens/s)")
    print(f"{args.n} separate generate calls: {t_separate * 1e3:9.1f} ms  "
          f"({counted['separate'] / t_separate:,.0f} tokens/s)")
    speedup = t_separate / t_batched
    print(f"speedup (separate / batched): {speedup:.2f}x")
    same_budget = counted["batched"] == counted["separate"]
    verdict(f"batched >= 5x faster than {args.n} separate calls, same token budget "
            f"(measured {speedup:.2f}x, budgets equal: {same_budget})", speedup >= 5 and same_budget)
    load_note()


if __name__ == "__main__":
    main()
