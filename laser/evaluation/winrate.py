"""The win rate of one outputs file over another under a pairwise judge, from the command line.

    python -m laser.evaluation.winrate A.json B.json --judge length
    python -m laser.evaluation.winrate A.json B.json --judge rm:Skywork/Skywork-Reward-Llama-3.1-8B --device cuda
    python -m laser.evaluation.winrate A.json B.json --judge lm:meta-llama/Meta-Llama-3-8B-Instruct --out result.json

The files are AlpacaEval `model_outputs.json` lists ({"instruction", "output", ...}), matched by
instruction. The rate is `laser.tasks.win_rate.win_rate`: the mean per-item score, where a win is 1,
a tie 0.5 and a loss 0; each item is judged as (a, b) and as (b, a) and the two verdicts are
averaged (unless --single-order), which cancels a judge's preference for the first position.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from laser.errors import LaserConfigError
from laser.evaluation.judges import LengthJudge, PairwiseLMJudge, RewardModelJudge
from laser.tasks.win_rate import Judge, read_alpaca_eval_outputs, win_rate


def match_outputs(rows_a: list[dict], rows_b: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """(instructions, outputs a, outputs b) in A's order, matched by instruction; both files must
    hold the same instructions (a repeated instruction is matched by its occurrence)."""
    def keyed(rows: list[dict]) -> dict[tuple[str, int], str]:
        seen: dict[str, int] = {}
        out = {}
        for row in rows:
            seen[row["instruction"]] = seen.get(row["instruction"], -1) + 1
            out[(row["instruction"], seen[row["instruction"]])] = row["output"]
        return out

    a, b = keyed(rows_a), keyed(rows_b)
    unmatched = len(a.keys() ^ b.keys())
    if unmatched:
        raise LaserConfigError(f"the two outputs files differ in their instructions: {unmatched} instruction(s) "
                               f"appear in only one of them ({len(a)} vs {len(b)} rows)")
    keys = list(a)
    return [k[0] for k in keys], [a[k] for k in keys], [b[k] for k in keys]


def build_judge(spec: str, device: str = "cpu", dtype: str = "float32", batch_size: int = 4) -> Judge:
    """A judge from a command-line spec: `length`, `rm:<path or hub id>` or `lm:<path or hub id>`."""
    kind, _, target = spec.partition(":")
    if kind == "length" and not target:
        return LengthJudge()
    if kind == "rm" and target:
        from laser.rewards.classifier import ClassifierRM

        return RewardModelJudge(ClassifierRM(target, batch_size=batch_size, device=device, dtype=dtype))
    if kind == "lm" and target:
        return PairwiseLMJudge(target, batch_size=batch_size, device=device, dtype=dtype)
    raise LaserConfigError(f"--judge {spec!r} is not one of: length, rm:<path or hub id>, lm:<path or hub id>")


def main(argv: list[str] | None = None) -> int:
    """Print the win rate of file A over file B (and write it as JSON with --out)."""
    parser = argparse.ArgumentParser(prog="python -m laser.evaluation.winrate", description=__doc__.splitlines()[0])
    parser.add_argument("outputs_a", help="AlpacaEval-format outputs of the model being rated")
    parser.add_argument("outputs_b", help="AlpacaEval-format outputs of the baseline")
    parser.add_argument("--judge", default="length", help="length | rm:<path or hub id> | lm:<path or hub id>")
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument("--single-order", action="store_true", help="judge (a, b) only (position bias stays)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        prompts, outputs_a, outputs_b = match_outputs(read_alpaca_eval_outputs(args.outputs_a),
                                                      read_alpaca_eval_outputs(args.outputs_b))
        judge = build_judge(args.judge, args.device, args.dtype, args.batch_size)
        result = win_rate(prompts, outputs_a, outputs_b, judge, both_orders=not args.single_order)
    except LaserConfigError as error:
        print(f"laser.evaluation.winrate: error: {error}", file=sys.stderr)
        return 2
    print(f"win rate of {args.outputs_a} over {args.outputs_b}: {result.rate:.4f} ± {result.se:.4f} "
          f"({100 * result.rate:.2f}%; n={result.n}: {result.wins} wins, {result.ties} ties, {result.losses} losses; "
          f"judge {args.judge}, {'one order' if args.single_order else 'both orders'})")
    if args.out:
        payload = {k: v for k, v in asdict(result).items() if k != "scores"}
        payload.update(judge=args.judge, both_orders=not args.single_order, outputs_a=args.outputs_a,
                       outputs_b=args.outputs_b)
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
