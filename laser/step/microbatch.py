"""The sequences of a step's preference pairs, each computed once and in micro-batches
(`laser.micro_batch_size`), with gradient accumulation that gives exactly the whole batch's gradient.

Each distinct (prompt, response) is one sequence, shared by every pair it appears in: with the paper's
10 pairs per prompt the top-scored response is in all 10, so a prompt needs 11 forwards, not 20.

Why the gradient is accumulated in two phases. The DPO loss couples a pair's chosen and rejected
log-probs through a sigmoid, and a sequence is shared by several pairs, so no micro-batch of sequences has
a loss of its own. The update therefore (1) computes every sequence's policy log-prob without grad, micro-
batch by micro-batch; (2) computes the per-pair losses from those numbers and, by autograd on that small
[S] leaf, the weight w_s = d(mean loss)/d logp_s of each sequence; (3) reruns each micro-batch's forward
with grad and backpropagates sum_s w_s * logp_s. By the chain rule the accumulated gradient is the whole
batch's, whatever the micro-batches (tested in float32). The price is one extra no-grad policy forward
over the step's sequences. Micro-batching by pairs instead (both sides of a pair together) would need no
extra forward but would compute a shared response once per micro-batch it appears in, and its memory would
follow the pairs, not a fixed number of sequences. When one micro-batch holds every sequence (the default,
`micro_batch_size: null`), phase (1) is the forward of phase (3): its graph is kept and no forward is
repeated. A rerun forward replays the random stream of its first run (LoRA dropout draws the same masks),
and the stream then continues where one pass would have left it.

Several micro-batches are formed longest sequences first, so that padding is small and the first micro-batch
shows the peak. With several processes (trainer=ddp|fsdp) every process runs as many micro-batches as the
one with the most (`MicroBatching.agree`): each backward is a gradient all-reduce (DDP) or reduce-scatter
(FSDP), each FSDP forward an all-gather, and unpaired collectives would hang. A process with fewer runs empty
micro-batches: one of its sequences with weight 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from laser.policy.policy import Policy

Pair = tuple[int, int, int]  # (prompt, chosen, rejected) indices into n responses per prompt
Backward = Callable[[torch.Tensor], None]  # loss.backward(), or Lightning's manual_backward


@dataclass
class Sequences:
    """The distinct (prompt, response) token sequences of a list of pairs, in first-seen order, and which
    of them each pair's chosen and rejected response is (`chosen[i]`, `rejected[i]`: [P] indices)."""

    prompts: list[list[int]]
    responses: list[list[int]]
    chosen: torch.Tensor
    rejected: torch.Tensor

    def __len__(self) -> int:
        return len(self.responses)

    def lengths(self) -> torch.Tensor:
        """Response token counts [S], float32."""
        return torch.tensor([float(len(r)) for r in self.responses])


def distinct_sequences(prompt_ids: list[list[int]], response_ids: list[list[int]], pairs: list[Pair],
                       n: int) -> Sequences:
    """The sequences of `pairs` (`response_ids[p * n + j]` answers prompt p), each distinct one once."""
    index: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    prompts: list[list[int]] = []
    responses: list[list[int]] = []

    def position(p: int, j: int) -> int:
        key = (tuple(prompt_ids[p]), tuple(response_ids[p * n + j]))
        if key not in index:
            index[key] = len(responses)
            prompts.append(prompt_ids[p])
            responses.append(response_ids[p * n + j])
        return index[key]

    chosen = [position(p, c) for p, c, _ in pairs]
    rejected = [position(p, r) for p, _, r in pairs]
    return Sequences(prompts, responses, torch.tensor(chosen, dtype=torch.long),
                     torch.tensor(rejected, dtype=torch.long))


def micro_batches(sequences: Sequences, size: int | None) -> list[list[int]]:
    """The sequence indices of each micro-batch: all of them at once when `size` is None or covers them,
    else chunks of `size`, longest prompt + response first."""
    count = len(sequences)
    if size is None or size >= count:
        return [list(range(count))]
    order = sorted(range(count), key=lambda i: -(len(sequences.prompts[i]) + len(sequences.responses[i])))
    return [order[start:start + size] for start in range(0, count, size)]


def _alone(count: int) -> int:
    return count


@dataclass(frozen=True)
class MicroBatching:
    """How the update splits a step's sequences: `size` per forward/backward (None: all at once), and, with
    several processes, `agree(count)`: the number of micro-batches every process runs (the most of any)."""

    size: int | None = None
    agree: Callable[[int], int] = _alone

    def batches(self, sequences: Sequences) -> list[list[int]]:
        """`micro_batches`, then empty ones up to the agreed count (never with size None: one each)."""
        batches = micro_batches(sequences, self.size)
        if self.size is None:
            return batches
        return batches + [[] for _ in range(self.agree(len(batches)) - len(batches))]


def _forward(policy: Policy, sequences: Sequences, batch: list[int], reference: bool = False) -> torch.Tensor:
    rows = batch or [0]  # an empty micro-batch (another process has more) runs one sequence for the collectives
    return policy.response_logps([sequences.prompts[i] for i in rows], [sequences.responses[i] for i in rows],
                                 reference=reference)


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@torch.no_grad()
def logps_without_grad(policy: Policy, sequences: Sequences, batches: list[list[int]], reference: bool = False,
                       rng_states: list | None = None) -> torch.Tensor:
    """Summed response log-probs [S] of every sequence, one no-grad forward per micro-batch, under the
    policy or (`reference`) the reference. `rng_states` collects the random state before each forward."""
    values: torch.Tensor | None = None
    for batch in batches:
        if rng_states is not None:
            rng_states.append(_rng_state(policy.device))
        logps = _forward(policy, sequences, batch, reference)
        if values is None:
            values = logps.new_empty(len(sequences))
        if batch:
            values[batch] = logps
    return values if values is not None else torch.zeros(0)


@dataclass
class PolicyPass:
    """The policy's log-probs [S] of a step's sequences (detached) and how to backpropagate a weighting
    of them micro-batch by micro-batch (`backward`): the state between phases (1) and (3) above."""

    policy: Policy
    sequences: Sequences
    batches: list[list[int]]
    values: torch.Tensor
    graph: torch.Tensor | None  # one micro-batch: its log-probs with their graph, for the backward
    rng_states: list

    def backward(self, weights: torch.Tensor, backward: Backward) -> None:
        """Accumulate the gradient of sum_s weights[s] * logp_s into the policy's `.grad`, one
        `backward(sum over the micro-batch)` per micro-batch (rerunning its forward with grad)."""
        weights = weights.to(self.values.device, self.values.dtype)
        if self.graph is not None:
            graph, self.graph = self.graph, None  # the graph is freed by its backward
            backward((graph * weights).sum())
            return
        device = self.policy.device
        after = _rng_state(device)
        for batch, state in zip(self.batches, self.rng_states, strict=True):
            _set_rng_state(state, device)  # the same dropout masks as in the no-grad pass
            batch_weights = weights[batch] if batch else weights.new_zeros(1)
            backward((_forward(self.policy, self.sequences, batch) * batch_weights).sum())
        _set_rng_state(after, device)


def policy_pass(policy: Policy, sequences: Sequences, batches: list[list[int]]) -> PolicyPass:
    """Phase (1): the policy's log-probs of every sequence. With one micro-batch, one forward with grad
    whose graph waits for `PolicyPass.backward`; with several, no-grad forwards (rerun in the backward)."""
    if len(batches) == 1:
        graph = _forward(policy, sequences, batches[0])
        return PolicyPass(policy, sequences, batches, graph.detach(), graph, [])
    states: list = []
    values = logps_without_grad(policy, sequences, batches, rng_states=states)
    return PolicyPass(policy, sequences, batches, values, None, states)
