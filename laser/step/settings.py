"""The knobs of the LASeR step: the `laser:` section of conf/config.yaml (but `iterations`, which the trainer
reads), as one object, so that they travel together from the config to `LaserModule` and are checked once."""

from __future__ import annotations

from dataclasses import dataclass

from laser.config.checks import check_values


@dataclass(frozen=True)
class StepSettings:
    """The step's knobs (conf/config.yaml, `laser:`, says what each costs).

    Args:
        num_samples: responses sampled per prompt (paper: 30); generation cost grows linearly.
        pairs_per_prompt: preference pairs per prompt (paper: 10), top-scored vs lower-scored.
        micro_batch_size: sequences per forward/backward of the update (None: all of the step's distinct
            responses at once); gradient accumulation, one optimiser step, the whole batch's gradient.
        lr, weight_decay, max_grad_norm: AdamW on the LoRA weights only (max_grad_norm 0: no clipping).
        refresh_reference: merge the adapter into the reference after every iteration (paper).
        on_rm_fault: an RM that raises, hangs, miscounts or returns NaN/inf: "skip" the step, or
            "penalise" (skip it and give the chosen arm reward 0). Either way it is counted (faults/*).
        on_no_pairs: a step without preference pairs (the RM tied every pair of distinct responses, or the
            responses were identical) trains nothing; "skip" leaves the selector unrewarded (paper),
            "neutral" / "penalise" reward the decision 0.5 / 0.
        log_samples_every: every N steps, log two prompts' sampled responses with their scores and the
            RM that scored them (`samples.jsonl`, and a W&B table with logger=wandb); 0 disables.
        counterfactuals: every step, score the samples with every RM and record what each would have given
            (`counterfactuals.jsonl`; K scorings and K virtual updates per step; the run is unchanged).
    """

    num_samples: int = 4
    pairs_per_prompt: int = 1
    micro_batch_size: int | None = None
    lr: float = 5e-6
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    refresh_reference: bool = True
    on_rm_fault: str = "skip"
    on_no_pairs: str = "skip"
    log_samples_every: int = 20
    counterfactuals: bool = False

    def __post_init__(self) -> None:
        check_values("laser", num_samples=self.num_samples, pairs_per_prompt=self.pairs_per_prompt,
                     micro_batch_size=self.micro_batch_size, lr=self.lr, weight_decay=self.weight_decay,
                     max_grad_norm=self.max_grad_norm, on_rm_fault=self.on_rm_fault, on_no_pairs=self.on_no_pairs,
                     log_samples_every=self.log_samples_every, counterfactuals=self.counterfactuals)
