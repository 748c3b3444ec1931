"""Summarise a Hydra multirun sweep: a results table (markdown, CSV, JSON) and plots.

    python -m laser.report outputs/multiruns/<time>              # writes next to the jobs
    python -m laser.report outputs/multiruns/<time> --out report/

Reads every job's `results.json` (searched recursively, so `<sweep>/<job>/results.json` and nested
sweeps both work) and `selections.jsonl` (`laser.report.jobs`). Writes `report.md`, `report.csv`,
`report.json` (`laser.report.tables`: one row per method and task, mean ± std and a 95% interval over
seeds; `laser.report.regret`: pseudo-regret against the per-category oracle RM) and the plots of
`laser.report.plots` (selection shares, accuracy by iteration, pseudo-regret). Jobs run with
`laser.counterfactuals=true` add what the bandit's reward sees (`laser.report.counterfactuals`: each RM's
reward against its gold accuracy, and the true regret) and its plots.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from laser.report.writing import write_report


def main(argv: list[str] | None = None) -> None:
    """CLI: `python -m laser.report <sweep dir> [--out DIR]`; prints the files written."""
    parser = argparse.ArgumentParser(prog="python -m laser.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. outputs/multiruns/<time>")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for path in write_report(args.sweep_dir, args.out):
        print(path)


if __name__ == "__main__":
    main()
