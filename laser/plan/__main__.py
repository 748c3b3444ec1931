"""`python -m laser.plan [overrides]`: the memory of every phase of the LASeR step, before a GPU is paid for.

    python -m laser.plan +experiment=gsm8k                         # the paper's GSM8K run on the visible GPU (else 80 GB)
    python -m laser.plan +experiment=gsm8k plan.device_memory_gb=40 # the same on a 40 GB GPU: which knobs it needs
    python -m laser.plan +experiment=gsm8k --exact                  # trace every layer (slower) instead of 2 and 3

The config is composed exactly as `python -m laser.run` composes it (same overrides). Exit code 0 when
the plan fits, 1 when it does not (the knobs that make it fit are printed), 2 for a bad config.
"""

from __future__ import annotations

import sys
import time
import warnings

from laser.errors import LaserConfigError


def compose_run_config(overrides: list[str]):
    """The config `python -m laser.run <overrides>` would run with (without Hydra's job settings)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import laser.runs.folder  # noqa: F401 (registers the resolvers conf/ names)
    from laser.config.checks import CONF_DIR, unknown_group_choice

    problem = unknown_group_choice(overrides, CONF_DIR)
    if problem:
        raise LaserConfigError(problem)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    """Print the plan of the composed config; 0 if it fits, 1 if not, 2 for a bad config."""
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return 0
    exact = "--exact" in args
    overrides = [a for a in args if a != "--exact"]
    warnings.filterwarnings("ignore")  # transformers' notes about building models without weights
    try:
        from laser.config.checks import check_config
        from laser.plan.advice import advise
        from laser.plan.inputs import plan_inputs
        from laser.plan.planner import plan_memory
        from laser.plan.table import format_plan

        started = time.perf_counter()
        cfg = compose_run_config(overrides)
        check_config(cfg)  # every knob's range, as laser.run checks it
        inputs = plan_inputs(cfg)
        plan = plan_memory(inputs, exact=exact)
        advice = [] if plan.fits else advise(plan)
    except LaserConfigError as error:
        print(f"laser.plan: error: {error}", file=sys.stderr)
        return 2
    depth = "every layer" if exact else "2 and 3 layers, extrapolated"
    title = (f"memory plan: {' '.join(overrides) or '(the default run)'}\n"
             f"peak device memory per phase (GiB = 2^30 bytes), traced with fake tensors at {depth} "
             f"in {time.perf_counter() - started:.0f} s")
    print(format_plan(plan, advice, title))
    return 0 if plan.fits else 1


if __name__ == "__main__":
    sys.exit(main())
