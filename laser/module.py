"""The LASeR step as a LightningModule (manual optimisation, so the step reads top to bottom).

    prompts -> contexts = context_encoder      (bandit context per prompt, no grad)
            -> decisions = selector.select     (per batch or per prompt; one RM, or all for ensembles)
            -> samples = policy.sample(n)      (one batched generate call)
            -> scores = pool.score(selected)   (only the selected RMs run)
            -> pairs = build_preference_pairs  (per prompt; ties skipped; selector may filter)
            -> loss = DPO (+ nll_weight * NLL) (reference = the policy with its adapter disabled)
            -> optimiser step
            -> selector.update(normalise(-loss))

An iteration is one Lightning epoch of `steps_per_iteration` steps; after it the test split is
evaluated (validation loop), the reference is refreshed, and a checkpoint holds everything needed to
continue exactly: adapter weights and merge history, optimiser, selector, normaliser, RM pool
counters and RNG streams, records, and the global RNG states.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import ModelParallelStrategy

from laser.bandits.base import Selector, StepFeedback
from laser.bandits.normaliser import QuantileNormaliser
from laser.config_checks import check_hyperparameters
from laser.contexts import ContextEncoder
from laser.decisions import Decision, gold_pair_accuracy, score_decisions
from laser.errors import LaserConfigError
from laser.losses import dpo_loss, nll_loss
from laser.pairs import build_preference_pairs
from laser.policy import Policy
from laser.ranks import any_rank, from_every_rank, interleaved, own_entry, shared_decision, summed_counts
from laser.records import IterationTracker, append_jsonl, rewind_selections, write_json_atomically
from laser.rewards.faults import RewardModelError
from laser.rewards.pool import RewardModelPool
from laser.rng import get_rng_state, set_rng_state
from laser.sharding import shard_policy
from laser.tasks.base import Example, Task

log = logging.getLogger(__name__)


class LaserModule(L.LightningModule):
    """Preference training of `policy` with RMs chosen by `selector` from `rm_pool`.

    Args:
        num_samples: responses sampled per prompt (paper: 30); generation cost grows linearly.
        pairs_per_prompt: preference pairs per prompt (paper: 10), top-scored vs lower-scored.
        beta: DPO temperature; label_smoothing: conservative DPO for noisy labels.
        nll_weight: weight of the NLL term on chosen responses (paper: 1 for reasoning, 0 for
            instruction following).
        lr, weight_decay, max_grad_norm: AdamW on the LoRA weights only.
        refresh_reference: merge the adapter into the reference after every iteration (paper).
        output_dir: where `selections.jsonl` and `results.json` go (rank 0 only).
        stop_after_iteration: end the fit early after this iteration (a planned stop; resume later).
        context_encoder: what the bandit sees per prompt (default: the paper's last-token state).
        log_samples_every: every N steps, log two prompts' sampled responses with their scores and the
            RM that scored them (`samples.jsonl`, and a W&B table with logger=wandb); 0 disables.
        on_rm_fault: an RM that raises, hangs, miscounts or returns NaN/inf: "skip" the step, or
            "penalise" (skip it and give the chosen arm reward 0). Either way it is counted (faults/*).
    """

    def __init__(self, policy: Policy, rm_pool: RewardModelPool, selector: Selector, task: Task,
                 normaliser: QuantileNormaliser, num_samples: int = 4, pairs_per_prompt: int = 1,
                 beta: float = 0.1, label_smoothing: float = 0.0, nll_weight: float = 1.0, lr: float = 5e-6,
                 weight_decay: float = 0.0, max_grad_norm: float = 1.0, refresh_reference: bool = True,
                 output_dir: str | None = None, stop_after_iteration: int | None = None,
                 context_encoder: ContextEncoder | None = None, log_samples_every: int = 20,
                 on_rm_fault: str = "skip") -> None:
        super().__init__()
        check_hyperparameters(num_samples, pairs_per_prompt, beta, lr, nll_weight)
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold the adapter, not the frozen base weights
        self.policy, self.rm_pool, self.selector, self.task = policy, rm_pool, selector, task
        self.normaliser = normaliser
        self.context_encoder = context_encoder or ContextEncoder()
        self.log_samples_every = log_samples_every
        if on_rm_fault not in ("skip", "penalise"):
            raise LaserConfigError(f"laser.on_rm_fault={on_rm_fault!r}; choose 'skip' or 'penalise'")
        self.on_rm_fault = on_rm_fault
        self.num_samples, self.pairs_per_prompt = num_samples, pairs_per_prompt
        self.beta, self.label_smoothing, self.nll_weight = beta, label_smoothing, nll_weight
        self.lr, self.weight_decay, self.max_grad_norm = lr, weight_decay, max_grad_norm
        self.refresh_each_iteration = refresh_reference
        self.output_dir = Path(output_dir) if output_dir else None
        self.stop_after_iteration = stop_after_iteration
        self.tracker = IterationTracker()
        self.last_eval: dict[str, float] = {}
        self._eval_responses: list[str] = []
        self._eval_examples: list[Example] = []
        self._pending_rng: dict[str, Any] | None = None
        # counters summed over ranks, refreshed at the end of each iteration (see `refresh_global_counts`)
        self.last_rm_calls: dict[str, int] = rm_pool.call_counts()
        self.last_rm_tokens: dict[str, int] = rm_pool.token_counts()
        self.last_generated_tokens = 0  # whole run so far
        self._iteration_started = time.perf_counter()
        self.elapsed_before = 0.0  # wall seconds of earlier sessions of a resumed run
        self._session_started = time.perf_counter()

    # ---- optimisation ----------------------------------------------------------------------------

    def configure_model(self) -> None:
        """trainer=fsdp: shard the policy's decoder layers over the ranks (laser/sharding.py)."""
        if isinstance(self.trainer.strategy, ModelParallelStrategy):
            layers = shard_policy(self.policy.model, self.device_mesh["data_parallel"])
            log.info("trainer=fsdp: %d decoder layers sharded over %d ranks", layers, self.trainer.world_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=self.lr, weight_decay=self.weight_decay)

    def transfer_batch_to_device(self, batch: list[Example], device: torch.device, dataloader_idx: int):
        return batch  # Examples are text; the policy tokenises onto its own device

    # ---- the LASeR step ----------------------------------------------------------------------------

    def training_step(self, batch: list[Example], batch_idx: int) -> None:
        if self._pending_rng is not None:  # first step after a resume: continue the saved streams
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        policy, n, phase = self.policy, self.num_samples, self.tracker.phase
        prompts = [self.task.format_prompt(example) for example in batch]
        with phase("embed"):
            encoded = policy.encode(prompts)
            contexts = (self.context_encoder(policy, encoded, prompts) if self.selector.uses_context  # [B, d], no grad
                        else torch.zeros(len(prompts), 1))  # a context-free selector (bandit=single): no forward
        with phase("bandit"):
            decisions, disagreeing_ranks = shared_decision(self.trainer, self.selector, contexts)  # per batch or prompt
            if disagreeing_ranks:  # every rank counts it, so rank 0's results.json reports it
                self.tracker.skipped["ddp_decision_mismatch"] += disagreeing_ranks
        with phase("generate"):
            samples = policy.sample(encoded, n)  # n per prompt, one generate call
        self.tracker.on_step(samples.num_generated_tokens)
        fault: RewardModelError | None = None
        try:
            with phase("score"):
                scores, per_arm = score_decisions(self.rm_pool, self.selector, decisions, batch, prompts,
                                                  samples.texts, n, self.task)  # only the chosen RMs run
            if not torch.isfinite(scores).all():
                bad = sorted({self.rm_pool.names[a] for d in decisions if not torch.isfinite(scores[d.prompts]).all()
                              for a in d.selection.arms})
                fault = RewardModelError(bad[0], "nonfinite_scores", f"{bad} returned NaN/inf scores")
        except RewardModelError as error:  # raised, hung or miscounted: the RM's fault, not the run's
            fault = error
        if any_rank(self.trainer, fault is not None):  # every rank skips together, or DDP collectives would hang
            kind = fault.kind if fault else "error"
            return self._rm_fault(kind, {fault.name} if fault else set(), decisions, batch,
                                  str(fault) if fault else "an RM fault on another rank")
        responses = [[tuple(samples.response_ids[p * n + j]) for j in range(n)] for p in range(len(batch))]
        pairs = build_preference_pairs(scores, self.pairs_per_prompt, responses=responses)
        pairs = self.selector.filter_pairs(pairs, per_arm)
        if not pairs:
            return self._skip("no_pairs", decisions, batch)

        with phase("train"):
            pair_losses, metrics = self._preference_loss(policy.unpadded_prompt_ids(encoded),
                                                         samples.response_ids, pairs, n)
            loss = pair_losses.mean()
            optimiser = self.optimizers()
            optimiser.zero_grad()
            self.manual_backward(loss)
            if self.max_grad_norm:
                self.clip_gradients(optimiser, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
            optimiser.step()
        self.tracker.on_loss(float(loss.detach()))

        self._learn(decisions, batch, samples.texts, n, StepFeedback(scores=per_arm, pairs=pairs),
                    pair_losses.detach(), loss.detach(), metrics)
        metrics.update({"train/loss": float(loss.detach()), "train/pairs": float(len(pairs)),
                        "train/truncated_responses": float(samples.num_truncated),
                        "bandit/arm": float(decisions[0].selection.arms[0])})
        if decisions[0].selection.propensity is not None:
            metrics["bandit/propensity"] = decisions[0].selection.propensity
        metrics.update(self.selector.diagnostics())
        if self.log_samples_every and (self.tracker.steps - 1) % self.log_samples_every == 0:
            self._log_samples(decisions, batch, prompts, samples.texts, scores, n)
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, batch_size=len(batch))
        self.log("rm", float(decisions[0].selection.arms[0]), prog_bar=True, on_step=True, batch_size=len(batch))
        if "bandit/reward" in metrics:
            self.log("reward", metrics["bandit/reward"], prog_bar=True, on_step=True, batch_size=len(batch))

    def _learn(self, decisions: list[Decision], batch: list[Example], responses: list[str], n: int,
               feedback: StepFeedback, pair_losses: torch.Tensor, loss: torch.Tensor,
               metrics: dict[str, float]) -> None:
        """The bandit learns from the step's loss (per instance: its prompt's pairs' loss); one
        selections.jsonl line per decision."""
        pairs, phase = feedback.pairs, self.tracker.phase
        for decision in decisions:
            reward_raw = self._decision_reward(decision, pairs, pair_losses, loss)
            if reward_raw is None:
                self._record(decision, batch, None, None, skipped="no_pairs")
                continue
            reward = self.normaliser(reward_raw)
            with phase("bandit"):
                self.selector.update(decision.selection, decision.context, reward, feedback)
            accuracy = gold_pair_accuracy(self.task, batch, responses, n,
                                          [p for p in pairs if p[0] in set(decision.prompts)])
            self._record(decision, batch, reward_raw, reward, gold_pair_accuracy=accuracy)
            metrics.update({"bandit/reward_raw": reward_raw, "bandit/reward": reward})

    def _decision_reward(self, decision: Decision, pairs: list[tuple[int, int, int]], pair_losses: torch.Tensor,
                         loss: torch.Tensor) -> float | None:
        """The raw bandit reward: minus the step's training loss (averaged over ranks, so every rank
        updates its selector identically), or, per instance, minus the mean loss of that prompt's pairs."""
        if self.selector.granularity == "batch":
            return -float(self.all_gather(loss).mean())
        own = [i for i, (p, _, _) in enumerate(pairs) if p in decision.prompts]
        return -float(pair_losses[own].mean()) if own else None

    def _preference_loss(self, prompt_ids: list[list[int]], response_ids: list[list[int]],
                         pairs: list[tuple[int, int, int]], n: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-pair DPO (+NLL) losses; chosen and rejected go through one concatenated forward."""
        pair_prompts = [prompt_ids[p] for p, _, _ in pairs]
        chosen = [response_ids[p * n + c] for p, c, _ in pairs]
        rejected = [response_ids[p * n + r] for p, _, r in pairs]
        # the reference first: its no-grad forward then peaks alone, not on top of the policy's saved activations
        reference_logps = self.policy.response_logps(pair_prompts * 2, chosen + rejected, reference=True)
        policy_logps = self.policy.response_logps(pair_prompts * 2, chosen + rejected)
        count = len(pairs)
        dpo = dpo_loss(policy_logps[:count], policy_logps[count:], reference_logps[:count],
                       reference_logps[count:], beta=self.beta, label_smoothing=self.label_smoothing)
        lengths = torch.tensor([len(c) for c in chosen], device=policy_logps.device)
        nll = nll_loss(policy_logps[:count], lengths)
        pair_losses = dpo.losses + self.nll_weight * nll
        margins = dpo.chosen_rewards - dpo.rejected_rewards
        return pair_losses, {  # TRL's metric names
            "train/dpo_loss": float(dpo.losses.mean().detach()), "train/nll_loss": float(nll.mean().detach()),
            "rewards/chosen": float(dpo.chosen_rewards.mean()), "rewards/rejected": float(dpo.rejected_rewards.mean()),
            "rewards/margins": float(margins.mean()), "rewards/accuracies": float((margins > 0).float().mean()),
            "logps/chosen": float(policy_logps[:count].detach().mean()),
            "logps/rejected": float(policy_logps[count:].detach().mean()),
        }

    def _rm_fault(self, kind: str, names: set[str], decisions: list[Decision], batch: list[Example],
                  detail: str) -> None:
        """A faulty RM: count it, then skip the step, or (on_rm_fault=penalise) also give every decision
        that chose the RM the worst reward, so the bandit learns to avoid it. The run goes on."""
        log.warning("step %d: %s (%s); step skipped%s", self.tracker.steps - 1, detail, kind,
                    ", arm penalised" if self.on_rm_fault == "penalise" else "")
        self.tracker.faults[f"faults/{kind}"] += 1
        for name in names:
            self.tracker.faults[f"faults/rm/{name}"] += 1
        if self.on_rm_fault == "penalise":
            for decision in decisions:
                if {self.rm_pool.names[a] for a in decision.selection.arms} & names:
                    self.selector.update(decision.selection, decision.context, 0.0, None)
        self._skip(kind if kind == "nonfinite_scores" else f"rm_{kind}", decisions, batch)

    def _skip(self, reason: str, decisions: list[Decision], batch: list[Example]) -> None:
        """A step without an update: counted, recorded, and the selector is not rewarded."""
        self.tracker.skipped[reason] += 1
        for decision in decisions:
            self._record(decision, batch, None, None, skipped=reason)
        self.log(f"skipped/{reason}", float(self.tracker.skipped[reason]), on_step=True, batch_size=len(batch))

    def _record(self, decision: Decision, batch: list[Example], reward_raw: float | None, reward: float | None,
                skipped: str | None = None, gold_pair_accuracy: float | None = None) -> None:
        """Count the decision and append its line to selections.jsonl (rank 0)."""
        arms = decision.selection.arms
        names = [self.rm_pool.names[a] for a in arms]
        self.tracker.on_decision(names)
        if self.output_dir is None or not self.trainer.is_global_zero:
            return
        categories: dict[str, int] = {}
        for index in decision.prompts:
            if batch[index].category:
                categories[batch[index].category] = categories.get(batch[index].category, 0) + 1
        line = {"step": self.tracker.steps - 1, "iteration": self.current_epoch + 1,
                "arm": arms[0] if len(arms) == 1 else list(arms), "arm_name": names[0] if len(names) == 1 else names,
                "reward_raw": reward_raw, "reward_normalised": reward, "categories": categories,
                "propensity": decision.selection.propensity, "gold_pair_accuracy": gold_pair_accuracy}
        if skipped:
            line["skipped"] = skipped
        append_jsonl(self.output_dir / "selections.jsonl", [line])

    def _log_samples(self, decisions: list[Decision], batch: list[Example], prompts: list[str],
                     responses: list[str], scores: torch.Tensor, n: int, shown_prompts: int = 2) -> None:
        """Sample completions with their scores and the RM(s) that scored them (rank 0)."""
        if self.output_dir is None or not self.trainer.is_global_zero:
            return
        rm_of_prompt = {p: "+".join(self.rm_pool.names[a] for a in d.selection.arms) for d in decisions for p in d.prompts}
        rows = [[self.tracker.steps - 1, rm_of_prompt[p], prompts[p], responses[p * n + j], float(scores[p, j]),
                 batch[p].answer] for p in range(min(shown_prompts, len(batch))) for j in range(n)]
        columns = ["step", "rm", "prompt", "response", "score", "gold"]
        append_jsonl(self.output_dir / "samples.jsonl", [dict(zip(columns, row, strict=True)) for row in rows])
        for logger in self.loggers:
            if hasattr(logger, "log_table"):  # W&B
                logger.log_table(key="samples", columns=columns, data=rows, step=self.global_step)

    # ---- evaluation ---------------------------------------------------------------------------------

    def validation_step(self, batch: list[Example], batch_idx: int) -> None:
        encoded = self.policy.encode([self.task.format_prompt(example) for example in batch])
        samples = self.policy.sample(encoded, 1, greedy=True)
        self._eval_responses += samples.texts
        self._eval_examples += batch

    def on_validation_epoch_end(self) -> None:
        # several processes: each rank answered its share of the test set; every rank scores all of it
        self._eval_responses = interleaved(self.trainer, self._eval_responses)
        self._eval_examples = interleaved(self.trainer, self._eval_examples)
        self.last_eval = self.task.evaluate(self._eval_responses, self._eval_examples)
        writer = getattr(self.task, "write_alpaca_eval_outputs", None)
        if writer and self.output_dir is not None and self.trainer.is_global_zero:  # for the official judge
            iteration = 0 if self.trainer.state.fn == "validate" else self.current_epoch + 1
            folder = self.output_dir / "model_outputs"
            folder.mkdir(exist_ok=True)
            writer(folder / f"iteration-{iteration}.json", self._eval_responses, self._eval_examples,
                   generator=f"laser-{type(self.selector).__name__}")
        self._eval_responses, self._eval_examples = [], []
        self.log_dict(self.last_eval, on_epoch=True, batch_size=1)
        if self.trainer.state.fn == "validate":  # the evaluation before training: iteration 0
            self._close_iteration(0, self.refresh_global_counts())

    def on_train_epoch_start(self) -> None:
        self._iteration_started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        if self.refresh_each_iteration:
            self.policy.refresh_reference()
            optimiser = self.optimizers().optimizer
            optimiser.state.clear()  # Adam moments belong to the old adapter; start the new one fresh
        self.selector.on_iteration_end(self.current_epoch + 1)
        iteration_tokens = self.refresh_global_counts()
        accounting = {f"time/{phase}": seconds for phase, seconds in self.tracker.phase_seconds.items()}
        accounting["tokens/generated"] = float(iteration_tokens)
        accounting.update({f"rm_calls/{name}": float(c) for name, c in self.last_rm_calls.items()})
        accounting.update({f"rm_tokens/{name}": float(c) for name, c in self.last_rm_tokens.items()})
        self.log_dict(accounting, on_epoch=True, on_step=False, batch_size=1)
        self._close_iteration(self.current_epoch + 1, iteration_tokens)
        if self.stop_after_iteration is not None and self.current_epoch + 1 >= self.stop_after_iteration:
            self.trainer.should_stop = True  # the checkpoint of this iteration is still written

    def refresh_global_counts(self) -> int:
        """Refresh the RM calls, RM tokens and generated tokens summed over ranks (a collective: call
        it on every rank); returns this iteration's generated tokens."""
        names = self.rm_pool.names
        counts = summed_counts(self.trainer, {
            **{f"calls/{n}": c for n, c in self.rm_pool.call_counts().items()},
            **{f"tokens/{n}": c for n, c in self.rm_pool.token_counts().items()},
            "generated/iteration": self.tracker.generated_tokens, "generated/total": self.tracker.total_generated_tokens})
        self.last_rm_calls = {n: counts[f"calls/{n}"] for n in names}
        self.last_rm_tokens = {n: counts[f"tokens/{n}"] for n in names}
        self.last_generated_tokens = counts["generated/total"]
        return counts["generated/iteration"]

    def _close_iteration(self, iteration: int, generated_tokens: int) -> None:
        record = self.tracker.close(iteration, self.last_eval, self.last_rm_calls, generated_tokens,
                                    time.perf_counter() - self._iteration_started, self.rm_pool.names)
        log.info("iteration %d: %s", iteration, {k: v for k, v in record.items() if k.startswith("test/")})
        self._iteration_started = time.perf_counter()
        if self.output_dir is not None and self.trainer.is_global_zero:
            write_json_atomically(self.output_dir / "iterations.json", self.tracker.records)

    def wall_seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._session_started

    # ---- checkpoints ----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {}  # the frozen base is rebuilt from its path + the merge history
        checkpoint["laser"] = {
            "adapter": self.policy.adapter_state_dict(),
            "merged_adapters": self.policy.merged_adapters,
            "selector": self.selector.state_dict(),
            "normaliser": self.normaliser.state_dict(),
            "last_eval": self.last_eval,
            "wall_seconds": self.wall_seconds(),
        }
        # what differs between ranks (random and noise streams, own counters): rank 0's, and every rank's
        local = {"rng": get_rng_state(), "rm_pool": self.rm_pool.state_dict(), "tracker": self.tracker.state_dict()}
        checkpoint["laser"].update(local, per_rank=from_every_rank(self.trainer, local))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["laser"]
        state = {**state, **(own_entry(state.get("per_rank"), self.global_rank, self.trainer.world_size) or {})}
        self.policy.replay_merges(state["merged_adapters"])
        self.policy.load_adapter_state_dict(state["adapter"])
        self.selector.load_state_dict(state["selector"])
        self.normaliser.load_state_dict(state["normaliser"])
        self.rm_pool.load_state_dict(state["rm_pool"])
        self.tracker.load_state_dict(state["tracker"])
        self.last_eval = state["last_eval"]
        self.elapsed_before = state["wall_seconds"]
        self._session_started = time.perf_counter()
        self._pending_rng = state["rng"]
        if self.output_dir is not None:
            kept = rewind_selections(self.output_dir / "selections.jsonl", self.tracker.steps)
            log.info("resumed after step %d (%d selections kept)", self.tracker.steps, kept)


