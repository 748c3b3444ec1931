"""What happens around the steps of an iteration (a `LaserModule` mixin): the evaluation on the test split
(iteration 0 is the one before any training), the reference refresh after each iteration, the iteration's
record (`iterations.json`) with its RM calls, RM tokens and generated tokens summed over ranks; with a
guard (`guard=dev_rollback`, laser/guard/dev_rollback.py), its checks (every `check_every` steps, and at
the iteration's end, before the test evaluation sees the policy).

An iteration is one Lightning epoch of `steps_per_iteration` steps; Lightning calls these hooks.
"""

from __future__ import annotations

import logging
import time

from laser.distributed.processes import from_rank_zero, interleaved, summed_counts
from laser.runs.files import write_json_atomically
from laser.step import records
from laser.tasks.base import Example

log = logging.getLogger("laser.step.module")


class IterationHooks:
    """Evaluation, reference refresh and iteration records of a `LaserModule` (which has the policy, task,
    selector, RM pool, settings, tracker and recorder these hooks use)."""

    def validation_step(self, batch: list[Example], batch_idx: int) -> None:
        encoded = self.policy.encode([self.task.format_prompt(example) for example in batch])
        samples = self.policy.sample(encoded, 1, greedy=True, stop_strings=self.task.stop_strings)  # graded as cut
        self._eval_responses += samples.texts
        self._eval_examples += batch

    def on_validation_epoch_end(self) -> None:
        # several processes: each rank answered its share of the test set; every rank scores all of it
        self._eval_responses = interleaved(self.trainer, self._eval_responses)
        self._eval_examples = interleaved(self.trainer, self._eval_examples)
        self.last_eval = self.task.evaluate(self._eval_responses, self._eval_examples)
        if self.recorder.folder is not None:  # rank 0, for a task judged by an outside tool (AlpacaEval)
            iteration = 0 if self.trainer.state.fn == "validate" else self.current_epoch + 1
            records.write_model_outputs(self.task, self.recorder.folder / "model_outputs", iteration,
                                        self._eval_responses, self._eval_examples,
                                        generator=f"laser-{type(self.selector).__name__}")
        self._eval_responses, self._eval_examples = [], []
        self.last_eval.update(self._guard_metrics)
        self.log_dict(self.last_eval, on_epoch=True, batch_size=1)
        if self.trainer.state.fn == "validate":  # the evaluation before training: iteration 0
            self._close_iteration(0, self.refresh_global_counts())

    def on_train_epoch_start(self) -> None:
        self._iteration_started = time.perf_counter()
        if self.guard is not None:  # what an undo restores; the first time, the policy's dev accuracy
            if self.guard.best_accuracy is None:
                self.guard.baseline(self._dev_accuracy())
            self.guard.begin(self.policy.adapter_state_dict())

    def on_train_batch_end(self, outputs, batch: list[Example], batch_idx: int) -> None:
        if self.guard is not None and self.guard.due(batch_idx + 1, self.trainer.num_training_batches):
            self._guard_check()

    def on_validation_epoch_start(self) -> None:
        self._guard_metrics = {}
        if self.guard is not None and self.trainer.state.fn == "fit":  # the iteration's last check
            self._guard_check()
            self._guard_metrics = self.guard.iteration_metrics()

    def _guard_check(self) -> None:
        """The guard's verdict on the steps since its last check: keep them, or restore the adapter of the
        last check, clear the optimiser's moments and give the penalty to their decisions on fallen categories."""
        verdict = self.guard.judge(self._dev_accuracy())
        if verdict.rolled_back:
            self.policy.load_adapter_state_dict(self.guard.adapter_at_check)
            self.optimizers().optimizer.state.clear()
            for selection, context in verdict.penalised:
                self.selector.update(selection, context, self.guard.penalty, None)
            log.info("guard: undone after step %d, dev accuracy fell on %s (%s); %d decisions penalised; resting %s",
                     self.tracker.steps, verdict.fallen, verdict.accuracy, len(verdict.penalised), self.guard.resting)
        self.guard.begin(self.guard.adapter_at_check if verdict.rolled_back else self.policy.adapter_state_dict())

    def _dev_accuracy(self) -> dict[str, float]:
        """The guard's dev accuracy per category (rank 0's on every rank, so all ranks judge alike)."""
        return from_rank_zero(self.trainer, self.guard.measure(self.policy, self.task))

    def on_train_epoch_end(self) -> None:
        if self.settings.refresh_reference:
            self.policy.refresh_reference()
            optimiser = self.optimizers().optimizer
            optimiser.state.clear()  # Adam moments belong to the old adapter; start the new one fresh
        self.selector.on_iteration_end(self.current_epoch + 1)
        iteration_tokens = self.refresh_global_counts()
        self.log_dict(records.iteration_metrics(self.tracker.phase_seconds, iteration_tokens, self.last_rm_calls,
                                                self.last_rm_tokens), on_epoch=True, on_step=False, batch_size=1)
        self._close_iteration(self.current_epoch + 1, iteration_tokens)
        if self.stop_after_iteration is not None and self.current_epoch + 1 >= self.stop_after_iteration:
            self.trainer.should_stop = True  # the checkpoint of this iteration is still written

    def refresh_global_counts(self) -> int:
        """Refresh the RM calls, RM tokens and generated tokens summed over ranks (a collective: call
        it on every rank); returns this iteration's generated tokens."""
        counts = summed_counts(self.trainer, {
            **{f"calls/{n}": c for n, c in self.rm_pool.call_counts().items()},
            **{f"tokens/{n}": c for n, c in self.rm_pool.token_counts().items()},
            "generated/iteration": self.tracker.generated_tokens, "generated/total": self.tracker.total_generated_tokens})
        self.last_rm_calls = {n: counts[f"calls/{n}"] for n in self.rm_pool.names}
        self.last_rm_tokens = {n: counts[f"tokens/{n}"] for n in self.rm_pool.names}
        self.last_generated_tokens = counts["generated/total"]
        return counts["generated/iteration"]

    def _close_iteration(self, iteration: int, generated_tokens: int) -> None:
        record = self.tracker.close(iteration, self.last_eval, self.last_rm_calls, generated_tokens,
                                    time.perf_counter() - self._iteration_started, self.rm_pool.names)
        log.info("iteration %d: %s", iteration, {k: v for k, v in record.items() if k.startswith("test/")})
        self._iteration_started = time.perf_counter()
        if self.recorder.folder is not None:
            write_json_atomically(self.recorder.folder / "iterations.json", self.tracker.records)

    def wall_seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._session_started
