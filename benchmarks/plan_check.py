"""The memory plan (`laser.plan`) against the measured peak of the real step, phase by phase.

A Llama with Llama-3-8B's widths and 4 layers (random weights, LoRA r16 on q/v, activation checkpointing,
AdamW) runs the step's own code: `Policy.sample` (one HF `generate` of prompts x samples, every response
to max_new_tokens) and `update_on_pairs` (reference and policy log-probs, backward, AdamW; measured on
its second call, when AdamW's state exists). Each phase's measured peak is `torch.cuda.max_memory_allocated`
on a GPU, or on the CPU the CPU allocator's own record (torch.profiler) plus the bytes already live. The
plan traces the same shapes with fake tensors (at 2 and 3 layers, extrapolated to 4, as it does at 32).

    python benchmarks/plan_check.py                              # on the GPU (bash benchmarks/gpu_check.sh runs it)
    python benchmarks/plan_check.py --device cpu --shape tiny    # the code path on a CPU (seconds)
"""

from __future__ import annotations

import argparse

import torch
from _common import LLAMA3_8B, header, llama_config, verdict  # puts the repo root on sys.path

from laser.plan.live import allocator_peak, storage_bytes
from laser.plan.phases import StepShape, policy_trace, prompt_batch
from laser.plan.table import gib
from laser.plan.trace import ModelSpec, at_depth, phase_peak, traced_policy
from laser.step.losses import DPOLoss
from laser.step.microbatch import MicroBatching
from laser.step.update import update_on_pairs

LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
SHAPES = {"8b": (dict(LLAMA3_8B, num_hidden_layers=4), StepShape(8, 8, 1, 256, 128, temperature=0.8)),
          "tiny": (dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=4, vocab_size=1000), StepShape(4, 8, 1, 48, 32, temperature=0.8))}


def build_policy(config, dtype: torch.dtype, device: str):
    """The real model (random weights, on the device) as a real `Policy` (its own sample / response_logps)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from laser.policy.checkpointing import enable_activation_checkpointing

    torch.set_default_dtype(dtype)  # parameters are created in `dtype`, on the device: no float32 copy
    with torch.device(device):
        base = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    enable_activation_checkpointing(base)
    return traced_policy(get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **LORA)))


def measure(policy, shape: StepShape, device: str) -> dict[str, int]:
    """The real peaks (bytes, everything on the device) of generation and of the update."""
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=5e-6)

    def step(accumulate) -> None:  # as LaserModule._optimiser_step: one backward per micro-batch
        optimiser.zero_grad()
        accumulate(torch.Tensor.backward)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimiser.step()

    vocab, generator = policy.model.config.vocab_size, torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (shape.prompt_tokens,), generator=generator).tolist()
               for _ in range(shape.prompts)]
    responses = [torch.randint(3, vocab, (shape.new_tokens,), generator=generator).tolist()
                 for _ in range(2 * shape.prompts)]
    pairs = [(p, 0, 1) for p in range(shape.prompts)]
    update = lambda: update_on_pairs(policy, prompts, responses, pairs, 2, DPOLoss(beta=0.1, nll_weight=1.0),  # noqa: E731
                                     MicroBatching(shape.micro_batch), 0, step)
    update()  # AdamW's state exists from here on
    optimiser.zero_grad(set_to_none=True)
    encoded = {k: v.to(device) for k, v in prompt_batch(shape.prompts, shape.prompt_tokens).items()}
    encoded["input_ids"] = torch.randint(3, vocab, encoded["input_ids"].shape, generator=generator).to(device)
    policy.max_new_tokens, policy.temperature = shape.new_tokens, shape.temperature
    sample = lambda: policy.sample(encoded, shape.samples)  # noqa: E731
    return {"update": peak_of(update, device, policy, optimiser),
            "generation": peak_of(sample, device, policy, optimiser)}


def peak_of(fn, device: str, policy, optimiser) -> int:
    """Peak bytes on the device while `fn` runs, everything already there included."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    live = storage_bytes([list(policy.model.parameters()), list(policy.model.buffers()),
                          [v for s in optimiser.state.values() for v in s.values()]])
    return live + allocator_peak(fn)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--shape", default="8b", choices=sorted(SHAPES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    header(args.threads)
    widths, shape = SHAPES[args.shape]
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    config = llama_config(**widths)
    torch.manual_seed(0)
    measured = measure(build_policy(config, dtype, args.device), shape, args.device)
    spec = ModelSpec(config, dtype=str(dtype).removeprefix("torch."), lora=LORA, checkpointing=True)
    planned = at_depth(policy_trace(spec, shape, phases=("generation", "update")), spec.layers)
    ratios = []
    for phase in ("generation", "update"):
        plan = planned["state"] + phase_peak(planned, phase)
        ratios.append(plan / measured[phase])
        print(f"memory plan vs measured, {phase} ({args.shape} shape, {spec.dtype}, {args.device}): plan {gib(plan)} "
              f"GiB / measured {gib(measured[phase])} GiB = {ratios[-1]:.3f}")
    verdict("plan within 15% of the measured peak in both phases", all(abs(r - 1) <= 0.15 for r in ratios))


if __name__ == "__main__":
    main()
