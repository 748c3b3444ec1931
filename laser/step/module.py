"""The LASeR step as a LightningModule (manual optimisation, so the step reads top to bottom).

    prompts -> contexts = context(prompts)       what the bandit sees        laser/selection/context.py
            -> decisions = decide(contexts)      one RM per batch (or prompt) laser/step/decisions.py
            -> samples = policy.sample(n)        one batched generate call   laser/policy/policy.py
            -> scores = the chosen RMs' scores   only they run               laser/step/scoring.py
            -> pairs = build_preference_pairs    per prompt, ties skipped    laser/step/pairs.py
            -> loss = DPO (+ nll_weight * NLL)   reference = adapter off     laser/step/preference.py
            -> optimiser step                    AdamW; micro-batches add up  laser/step/microbatch.py
            -> selector.update(reward)           the bandit's reward (paper: -loss) laser/selection/selector_reward/

What sits beside the step, behind one call each: RM faults (laser/step/scoring.py), what a step
writes and logs (laser/step/records.py), the ranks' agreement (laser/distributed/processes.py).

An iteration is one Lightning epoch of `steps_per_iteration` steps; after it the test split is
evaluated (validation loop), the reference is refreshed, and a checkpoint holds everything needed to
continue exactly (laser/step/state.py): adapter weights and merge history, optimiser, selector,
selector reward, RM pool counters and RNG streams, records, and the global RNG states.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import ModelParallelStrategy

from laser.distributed.processes import any_rank, most_of_any_rank
from laser.distributed.sharding import shard_policy
from laser.guard.dev_rollback import DevRollback
from laser.policy.policy import Policy, Samples
from laser.rewards.pool import RewardModelPool
from laser.runs.files import rewind_selections
from laser.runs.kill_switch import maybe_die
from laser.runs.results import IterationTracker
from laser.runs.rng import set_rng_state
from laser.selection.base import Selector, StepFeedback
from laser.selection.context import Context, LastTokenContext
from laser.selection.selector_reward.base import SelectorReward, StepEvidence
from laser.step import records
from laser.step.counterfactuals import Counterfactuals
from laser.step.decisions import Decision, shared_decision
from laser.step.iteration import IterationHooks
from laser.step.losses import DPOLoss
from laser.step.microbatch import MicroBatching
from laser.step.pairs import build_preference_pairs, mean_chosen_score
from laser.step.records import StepRecorder
from laser.step.scoring import handle_rm_fault, score_step
from laser.step.settings import StepSettings
from laser.step.state import Resumable, checkpoint_state, restore_checkpoint_state, restore_policy_weights
from laser.step.update import Update, update_on_pairs, update_then_undo
from laser.tasks.base import Example, Task

log = logging.getLogger(__name__)
NO_PAIRS_REWARD = {"neutral": 0.5, "penalise": 0.0}  # on_no_pairs: the normalised reward of a step without pairs


class LaserModule(IterationHooks, L.LightningModule):
    """Preference training of `policy` with RMs chosen by `selector` from `rm_pool`.

    Args:
        loss: the preference loss (`conf/loss/`: DPO + nll_weight * NLL, laser/step/losses.py); the step
            hands it log-probs and reads per-pair losses, never its knobs.
        context: what the bandit sees per prompt (default: the paper's last-token state).
        settings: the step's knobs, the `laser:` section of the config (laser/step/settings.py).
        output_dir: where `selections.jsonl` and `results.json` go (rank 0 only).
        guard: checks the policy on held-out dev prompts and may undo steps (laser/guard/dev_rollback.py).
        stop_after_iteration: end the fit early after this iteration (a planned stop; resume later).
    """

    def __init__(self, policy: Policy, rm_pool: RewardModelPool, selector: Selector, task: Task,
                 selector_reward: SelectorReward, loss: DPOLoss | None = None, context: Context | None = None,
                 settings: StepSettings | None = None, output_dir: str | None = None,
                 stop_after_iteration: int | None = None, guard: DevRollback | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold the adapter, not the frozen base weights
        self.policy, self.rm_pool, self.selector, self.task = policy, rm_pool, selector, task
        self.selector_reward = selector_reward
        self.loss, self.context = loss or DPOLoss(nll_weight=1.0), context or LastTokenContext()
        self.settings = settings or StepSettings()
        self.output_dir, self.stop_after_iteration = Path(output_dir) if output_dir else None, stop_after_iteration
        self.tracker = IterationTracker()
        self.guard, self._guard_metrics = guard, {}
        self.recorder: StepRecorder  # where this process's records go: made in `setup`, once its rank is known
        self.counterfactuals: Counterfactuals | None = None  # laser.counterfactuals=true, on the writing rank
        self.last_eval: dict[str, float] = {}
        self._eval_responses: list[str] = []
        self._eval_examples: list[Example] = []
        self._pending_rng: dict[str, Any] | None = None
        self._pending_weights: dict[str, Any] | None = None  # a resumed run's policy weights (`on_fit_start`)
        # counters summed over ranks, refreshed at the end of each iteration (see `refresh_global_counts`)
        self.last_rm_calls: dict[str, int] = rm_pool.call_counts()
        self.last_rm_tokens: dict[str, int] = rm_pool.token_counts()
        self.last_generated_tokens = 0  # whole run so far
        self._iteration_started = time.perf_counter()
        self.elapsed_before = 0.0  # wall seconds of earlier sessions of a resumed run
        self._session_started = time.perf_counter()

    # ---- set-up and optimisation ------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Once the trainer knows this process's rank: rank 0 writes the run's files, every rank logs."""
        folder = self.output_dir if self.trainer.is_global_zero else None
        self.recorder = StepRecorder(self.tracker, self.rm_pool.names, folder, self.log_dict, self.loggers,
                                     self.settings.log_samples_every)
        if self.settings.counterfactuals and folder is not None:
            self.counterfactuals = Counterfactuals(self.rm_pool, self.task, self.selector_reward,
                                                   self.settings.pairs_per_prompt, folder)

    def configure_model(self) -> None:
        """trainer=fsdp: shard the policy's decoder layers over the ranks (laser/distributed/sharding.py)."""
        if isinstance(self.trainer.strategy, ModelParallelStrategy):
            layers = shard_policy(self.policy.model, self.device_mesh["data_parallel"])
            log.info("trainer=fsdp: %d decoder layers sharded over %d ranks", layers, self.trainer.world_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=self.settings.lr, weight_decay=self.settings.weight_decay)

    def on_fit_start(self) -> None:
        """After Lightning has put the model on its device: replay a resumed run's reference refreshes there."""
        if self._pending_weights is not None:
            restore_policy_weights(self.policy, self._pending_weights)
            self._pending_weights = None

    def transfer_batch_to_device(self, batch: list[Example], device: torch.device, dataloader_idx: int):
        return batch  # Examples are text; the policy tokenises onto its own device

    # ---- the LASeR step ----------------------------------------------------------------------------

    def training_step(self, batch: list[Example], batch_idx: int) -> None:
        """One LASeR step: context -> decide -> sample -> score -> pairs -> loss -> step -> reward."""
        self._continue_saved_rng_streams()
        prompts = [self.task.format_prompt(example) for example in batch]
        n, iteration = self.settings.num_samples, self.current_epoch + 1
        if self.guard is not None and any_rank(self.trainer, self.guard.rests(batch)):  # a category the guard rests
            return self.recorder.skip("guard_resting", [], batch, iteration)
        with self.phase("embed"):
            encoded = self.policy.encode(prompts)
            contexts = self._contexts(encoded, prompts)  # [B, d], no grad
        with self.phase("bandit"):
            decisions = self._decide(contexts)  # per batch or per prompt: which RM(s) score
        with self.phase("generate"):
            # n per prompt, one generate call; each response cut at EOS or at the task's stop strings
            samples = self.policy.sample(encoded, n, stop_strings=self.task.stop_strings)
        self.tracker.on_step(samples.num_generated_tokens)
        prompt_ids = self.policy.unpadded_prompt_ids(encoded)
        if self.counterfactuals:  # opt-in: what every RM would have given (laser/step/counterfactuals.py)
            measure = partial(self._update, prompt_ids=prompt_ids, response_ids=samples.response_ids, trains=False)
            self.counterfactuals.record(batch, prompts, samples, decisions, measure, self.tracker.steps - 1, iteration)
        with self.phase("score"):  # only the chosen RMs run; an RM that fails is a fault (laser/step/scoring.py)
            scored = score_step(self.rm_pool, self.selector, decisions, batch, prompts, samples.texts, n, self.task)
        if any_rank(self.trainer, scored.fault is not None):  # all ranks skip together, or DDP collectives hang
            reason = handle_rm_fault(scored.fault, decisions, self.rm_pool.names, self.selector, self.tracker,
                                     self.settings.on_rm_fault)
            return self.recorder.skip(reason, decisions, batch, iteration)
        pairs = self._pairs(scored.scores, scored.per_arm, samples)
        if any_rank(self.trainer, not pairs):  # all ranks skip together, or DDP's backward would hang
            return self._skip_without_pairs(decisions, batch, iteration)
        with self.phase("train"):
            trains = all(decision.selection.trains for decision in decisions)
            if not trains:  # e.g. LinUCB trying an RM out: the update is measured, then undone
                self.tracker.skipped["exploration_not_trained"] += 1
            evidence, loss, metrics = self._update(pairs, prompt_ids, samples.response_ids, trains)
        self.tracker.on_loss(float(loss))
        feedback = StepFeedback(scores=scored.per_arm, pairs=[p for p in pairs if p[0] in set(evidence.prompts)])
        metrics.update(self._reward(decisions, batch, samples.texts, feedback, evidence, pairs, iteration))
        metrics.update(records.step_metrics(loss, feedback.pairs, samples, decisions, self.selector))
        self.recorder.step(metrics, decisions, batch, prompts, samples.texts, scored.scores, self.global_step)

    def phase(self, name: str):
        """Time a phase of the step into this iteration's record (the test kill switch may stop here)."""
        maybe_die(name, self.tracker.steps)  # fault-injection tests only (laser/runs/kill_switch.py)
        return self.tracker.phase(name)

    def _continue_saved_rng_streams(self) -> None:
        if self._pending_rng is not None:  # first step after a resume: continue the saved streams
            set_rng_state(self._pending_rng)
            self._pending_rng = None

    def _contexts(self, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        """What the bandit sees per prompt; zeros, without a policy forward, for a context-free selector."""
        if not self.selector.uses_context:  # bandit=single: the fixed arm, whatever the context
            return torch.zeros(len(prompts), 1)
        return self.context(self.policy, encoded, prompts)

    def _decide(self, contexts: torch.Tensor) -> list[Decision]:
        """The selector's decisions; with several processes, rank 0's, shared (disagreements counted)."""
        decisions, disagreeing_ranks = shared_decision(self.trainer, self.selector, contexts)
        if disagreeing_ranks:  # every rank counts it, so rank 0's results.json reports it
            self.tracker.skipped["ddp_decision_mismatch"] += disagreeing_ranks
        return decisions

    def _pairs(self, scores: torch.Tensor, per_arm: dict[int, torch.Tensor], samples: Samples) -> list[tuple[int, int, int]]:
        """Preference pairs per prompt (ties and identical responses skipped), as the selector filters them."""
        n = self.settings.num_samples
        responses = [[tuple(samples.response_ids[p * n + j]) for j in range(n)] for p in range(len(scores))]
        pairs = build_preference_pairs(scores, self.settings.pairs_per_prompt, responses=responses)
        return self.selector.filter_pairs(pairs, per_arm)

    def _skip_without_pairs(self, decisions: list[Decision], batch: list[Example], iteration: int) -> None:
        """A step without pairs trains nothing. Unrewarded (on_no_pairs=skip), an RM that ties everything in
        a region of context stays untried there, and LinUCB keeps choosing it; neutral/penalise reward it."""
        if self.settings.on_no_pairs != "skip":
            reward = NO_PAIRS_REWARD[self.settings.on_no_pairs]
            for decision in decisions:
                self.selector.update(decision.selection, decision.context, reward, None)
        self.recorder.skip("no_pairs", decisions, batch, iteration)

    def _optimiser_step(self, accumulate) -> None:
        """Zero the gradients, `accumulate(manual_backward)` (one backward per micro-batch), clip, step."""
        optimiser = self.optimizers()
        optimiser.zero_grad()
        accumulate(self.manual_backward)
        if self.settings.max_grad_norm:
            self.clip_gradients(optimiser, gradient_clip_val=self.settings.max_grad_norm,
                                gradient_clip_algorithm="norm")
        optimiser.step()

    def _update(self, pairs: list[tuple[int, int, int]], prompt_ids: list[list[int]], response_ids: list[list[int]],
                trains: bool = True) -> Update:
        """The optimiser step on the pairs (but those the selector reward holds back) and what it measured
        for that reward (laser/step/update.py). `trains=False` measures the same update, then undoes it
        (a selection that does not train, `Selection.trains`, and the counterfactuals): the bandit learns,
        the policy does not."""
        update = partial(update_on_pairs, self.policy, prompt_ids, response_ids, pairs, self.settings.num_samples,
                         self.loss, self.micro_batching(), self.selector_reward.holdout_every)
        if trains:
            return update(self._optimiser_step)
        return update_then_undo(self.policy, self.optimizers().optimizer, self.settings.max_grad_norm, update)

    def micro_batching(self) -> MicroBatching:
        """`micro_batch_size` sequences per micro-batch, as many micro-batches on every rank (collectives pair up)."""
        return MicroBatching(self.settings.micro_batch_size,
                             agree=lambda count: most_of_any_rank(self.trainer, count))

    def _reward(self, decisions: list[Decision], batch: list[Example], responses: list[str],
                feedback: StepFeedback, evidence: StepEvidence, pairs: list[tuple[int, int, int]],
                iteration: int) -> dict[str, float]:
        """The bandit learns from the selector reward of each decision (laser/selection/selector_reward/),
        mapped to [0, 1]; one selections.jsonl line per decision, with the gold accuracy of all its pairs
        (held-back ones too). Returns the (last) reward's metrics."""
        metrics: dict[str, float] = {}
        for decision in decisions:
            reward_raw = self._decision_reward(decision, evidence)
            if reward_raw is None:
                self.recorder.decision(decision, batch, iteration, skipped="no_pairs")
                continue
            reward = self.selector_reward(reward_raw, decision.context)
            with self.phase("bandit"):
                self.selector.update(decision.selection, decision.context, reward, feedback)
            if self.guard is not None:  # undone steps penalise their decisions (laser/guard/)
                self.guard.note(batch, decision.prompts, decision.selection, decision.context)
            own = [p for p in pairs if p[0] in set(decision.prompts)]
            accuracy = records.gold_pair_accuracy(self.task, batch, responses, self.settings.num_samples, own)
            self.recorder.decision(decision, batch, iteration, reward_raw, reward, gold_pair_accuracy=accuracy,
                                   chosen_score=mean_chosen_score(feedback.scores, decision.selection.arms, own))
            metrics.update({"bandit/reward_raw": reward_raw, "bandit/reward": reward})
        return metrics

    def _decision_reward(self, decision: Decision, evidence: StepEvidence) -> float | None:
        """The raw reward of a decision: the selector reward measured on the whole step's evidence, averaged
        over ranks (so every rank updates its selector identically), or, per instance, on that prompt's."""
        if self.selector.granularity == "batch":
            measured = self.selector_reward.measure(evidence)
            gathered = self.all_gather(torch.tensor(float("nan") if measured is None else measured))
            return None if bool(torch.isnan(gathered).all()) else float(gathered.nanmean())
        return self.selector_reward.measure(evidence.for_prompts(decision.prompts))

    # ---- checkpoints ----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {}  # the frozen base is rebuilt from its path + the merge history
        checkpoint["laser"] = checkpoint_state(self._resumable(), self.trainer, last_eval=self.last_eval,
                                               wall_seconds=self.wall_seconds())  # laser/step/state.py

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = restore_checkpoint_state(self._resumable(), checkpoint["laser"], self.global_rank,
                                         self.trainer.world_size)
        self._pending_weights = state  # the policy's: once it is on its device (Lightning loads this before)
        if self.trainer.strategy.restore_checkpoint_after_setup:  # FSDP: the model is placed already
            self.on_fit_start()
        self.last_eval, self.elapsed_before = state["last_eval"], state["wall_seconds"]
        self._session_started, self._pending_rng = time.perf_counter(), state["rng"]
        if self.output_dir is not None:
            kept = rewind_selections(self.output_dir / "selections.jsonl", self.tracker.steps)
            log.info("resumed after step %d (%d selections kept)", self.tracker.steps, kept)

    def _resumable(self) -> Resumable:
        return Resumable(self.policy, self.selector, self.selector_reward, self.rm_pool, self.tracker, self.guard)
