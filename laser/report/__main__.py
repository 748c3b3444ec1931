"""Summarise a Hydra multirun sweep: a results table (markdown, CSV, JSON) and plots.

    python -m laser.report outputs/multiruns/<time>              # writes next to the jobs
    python -m laser.report outputs/multiruns/<time> --out report/
    python -m laser.report outputs/multiruns/<time> --judge rm:Skywork/Skywork-Reward-Llama-3.1-8B --judge-device cuda

Reads every job's `results.json` (searched recursively, so `<sweep>/<job>/results.json` and nested
sweeps both work) and `selections.jsonl` (`laser.report.jobs`). Writes `report.md`, `report.csv`,
`report.json` (`laser.report.tables`: one row per method and task, mean ± std and a 95% interval over
seeds; `laser.report.regret`: pseudo-regret against the per-category oracle RM) and the plots of
`laser.report.plots` (selection shares, accuracy by iteration, pseudo-regret). Jobs run with
`laser.counterfactuals=true` add what the bandit's reward sees (`laser.report.counterfactuals`: each RM's
reward against its gold accuracy, and the true regret) and its plots. Jobs that wrote their test responses
(instruction following: `model_outputs/`) add LASeR's head-to-head win rates against each baseline on the
same prompts (`laser.report.head_to_head`), under `--judge` or else the judge the jobs evaluated with.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from laser.errors import LaserConfigError
from laser.report.writing import write_report


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m laser.report <sweep dir> [--out DIR] [--judge SPEC]`; prints the files written."""
    parser = argparse.ArgumentParser(prog="python -m laser.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. outputs/multiruns/<time>")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    parser.add_argument("--judge", default=None, help="head-to-head judge: length | rm:<path or hub id> | "
                        "lm:<path or hub id> (default: the judge the jobs evaluated with)")
    parser.add_argument("--judge-device", default="cpu", help="where the judge runs, e.g. cuda")
    parser.add_argument("--judge-dtype", default="float32", help="the judge's dtype, e.g. bfloat16")
    parser.add_argument("--laser", action="append", default=None, metavar="METHOD",
                        help="a LASeR row of the head-to-head (repeatable; default: methods starting with linucb)")
    parser.add_argument("--baseline", default=None, metavar="METHOD",
                        help="the method every other is paired against, seed by seed (default: score_ensemble, if run)")
    parser.add_argument("--hacking-threshold", type=float, default=0.5, metavar="ACCURACY",
                        help="flag a chosen RM whose live accuracy falls below this (default 0.5: chance; "
                             "needs laser.counterfactuals=true runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        judge = None
        if args.judge:
            from laser.evaluation.winrate import build_judge

            judge = build_judge(args.judge, args.judge_device, args.judge_dtype)
        files = write_report(args.sweep_dir, args.out, judge, args.laser, args.baseline, args.hacking_threshold)
    except LaserConfigError as error:
        print(f"laser.report: error: {error}", file=sys.stderr)
        return 2
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
