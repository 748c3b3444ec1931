"""laser's DPO step against TRL's DPOTrainer on the same work: pairs per second and peak memory.

Both systems train the same locally built Llama (random weights, no hub) with the same LoRA (r,
alpha, targets, and the same seeded initial weights, B non-zero so the policy already differs from
its reference), on the same batches of (prompt, chosen, rejected) in the same order, with the same
loss (sigmoid DPO, beta; laser's NLL weight 0), the same reference (the policy with its adapter
disabled: neither keeps a second copy), AdamW (torch, not fused, constant learning rate, no weight
decay), gradient-norm clipping at 1.0, the same dtype and torch threads, no activation checkpointing.

- laser: `laser.step.preference.preference_loss` (reference forward first, then the policy on chosen+rejected
  in one batch, logits for the response positions only) + backward + clip + AdamW, the module's
  train phase, built from laser's own config (`python -m laser.run policy=hf ...`).
- TRL: `DPOTrainer.train()` as a user runs it (its collator, its fused chunked LM head, its metrics
  and logging each step), with `gradient_checkpointing=False` (TRL's default is True) and
  `bf16=False` (the weights are loaded in `--dtype` for both; no autocast on either side).

Each system runs in its own child process: `--warmup` untimed steps, then `--steps` timed steps.
A step's time is the wall time between the ends of consecutive steps (so TRL's data loading,
collation and logging between steps count, as laser's do). pairs/s = pairs per step / median step
time. Peak memory over the timed steps: on the CPU, peak RSS above the process's RSS after its
imports (memory.py's measure); on a GPU, torch.cuda.max_memory_allocated. Equal work is checked:
identical token ids on both sides, and the same loss on the first batch within a tolerance (1e-4
in float32, 2e-2 in bfloat16), plus the first batch's mean chosen/rejected log-probs.

    pip install -e '.[bench]'                  # trl==1.16.0 (not part of the core install)
    python benchmarks/dpo_vs_trl.py            # ~13M-parameter Llama, 4 pairs of 64+64 tokens, float32, CPU
    python benchmarks/dpo_vs_trl.py --device cuda --dtype bfloat16 --shape 1b   # gpu_check.sh's shape

Targets: laser's pairs/s >= 1.0x TRL's; laser's peak memory <= 1.0x TRL's.
Exits 2 with a message when trl is not installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from _common import count_params, header, llama_config, load_note, verdict
from _versus import SHAPES, add_common_arguments, require_trl, run_rounds

TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2}
LETTERS = "abcdefghijklmnopqrstuvwxyz"  # one byte-level token each with laser.tiny's bytes-only tokenizer


def save_policy(folder: Path, config, dtype: str, device: str) -> str:
    """The model both systems train, with laser.tiny's bytes-only tokenizer (one token per letter)."""
    from _versus import save_random_model, tokenizer
    from transformers import LlamaForCausalLM

    return save_random_model(folder, LlamaForCausalLM, config, tokenizer([], vocab_size=300), dtype, device)


def make_pairs(count: int, prompt_len: int, response_len: int, seed: int = 0) -> dict[str, list[str]]:
    """`count` (prompt, chosen, rejected) texts of fixed token lengths (responses: response_len - 1
    letters; TRL appends EOS to non-conversational responses, laser gets the same EOS id)."""
    rng = random.Random(seed)

    def text(n: int) -> str:
        return "".join(rng.choice(LETTERS) for _ in range(n))

    return {"prompt": [text(prompt_len) for _ in range(count)],
            "chosen": [text(response_len - 1) for _ in range(count)],
            "rejected": [text(response_len - 1) for _ in range(count)]}


def ids_digest(rows: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def step_times(ends: list[float], warmup: int) -> list[float]:
    """Seconds of each timed step: from the end of the step before it to its own end."""
    return [b - a for a, b in zip(ends[warmup - 1:-1], ends[warmup:], strict=True)]


# ---- laser (the only function that imports laser: see _versus.build_laser) ---------------------------

def laser_child(a: argparse.Namespace) -> dict:
    import torch
    from _versus import PeakMemory, build_laser, import_laser, init_lora, laser_preference_loss, sync

    import_laser()
    memory = PeakMemory(a.device)
    out = Path(a.workdir) / "laser-run"
    parts = build_laser([
        "policy=hf", f"policy.model_name_or_path={a.model_dir}", f"policy.dtype={a.dtype}",
        f"policy.lora.r={a.lora_r}", f"policy.lora.lora_alpha={a.lora_alpha}", "policy.lora.lora_dropout=0.0",
        f"policy.lora.target_modules=[{','.join(a.lora_targets)}]", f"policy.max_prompt_tokens={a.prompt_len}",
        f"loss.beta={a.beta}", "loss.nll_weight=0.0", f"laser.lr={a.lr}", "laser.weight_decay=0.0",
        "laser.max_grad_norm=1.0", "bandit=single", f"paths.cache_dir={a.workdir}/cache",
    ], out)
    module = parts["module"]
    policy = module.policy
    policy.to(a.device)
    policy.model.train()
    lora_tensors = init_lora(policy.model)
    optimiser = module.configure_optimizers()  # laser's AdamW on the LoRA weights
    trainable = [p for p in policy.parameters() if p.requires_grad]
    texts = json.loads(Path(a.data).read_text())
    tok, eos = policy.tokenizer, policy.tokenizer.eos_token_id
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts["prompt"]]
    chosen = [tok(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts["chosen"]]
    rejected = [tok(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts["rejected"]]

    def step(i: int) -> dict:  # LaserModule.training_step's train phase on pairs (p, chosen=0, rejected=1), n=2
        rows = slice(i * a.pairs, (i + 1) * a.pairs)
        responses = [r for pair in zip(chosen[rows], rejected[rows], strict=True) for r in pair]
        pairs = [(p, 0, 1) for p in range(a.pairs)]
        result = laser_preference_loss(module, prompts[rows], responses, pairs, 2)
        loss, metrics = result.losses.mean(), result.metrics
        optimiser.zero_grad()
        result.backward(torch.Tensor.backward)
        torch.nn.utils.clip_grad_norm_(trainable, module.settings.max_grad_norm)
        optimiser.step()
        return {"loss": float(loss.detach()), "logps/chosen": metrics["logps/chosen"],
                "logps/rejected": metrics["logps/rejected"]}

    logs, ends = [], []
    for i in range(a.warmup + a.steps):
        logs.append(step(i))
        sync(a.device)
        ends.append(time.perf_counter())
        if i == a.warmup - 1:
            memory.reset()
    return {"times": step_times(ends, a.warmup), "peak_mib": memory.peak_mib(), "logs": logs,
            "lora_tensors": lora_tensors, "ids": ids_digest(prompts + chosen + rejected)}


# ---- TRL ---------------------------------------------------------------------------------------------

def trl_child(a: argparse.Namespace) -> dict:
    import torch
    from _versus import PeakMemory, init_lora, trl_clock
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from transformers.models.llama import modeling_llama  # noqa: F401 (imported before the memory baseline)
    from trl import DPOConfig, DPOTrainer

    memory = PeakMemory(a.device)
    dtype = getattr(torch, a.dtype)
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=dtype).to(a.device)
    tokenizer = AutoTokenizer.from_pretrained(a.model_dir)
    texts = json.loads(Path(a.data).read_text())
    args = DPOConfig(
        output_dir=str(Path(a.workdir) / "trl-run"), per_device_train_batch_size=a.pairs,
        max_steps=a.warmup + a.steps, learning_rate=a.lr, lr_scheduler_type="constant", optim="adamw_torch",
        weight_decay=0.0, max_grad_norm=1.0, beta=a.beta, loss_type=["sigmoid"], gradient_checkpointing=False,
        bf16=False, fp16=False, use_cpu=a.device == "cpu", max_length=None, train_sampling_strategy="sequential",
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )
    lora = LoraConfig(task_type="CAUSAL_LM", r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=0.0,
                      target_modules=list(a.lora_targets))
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_dict(texts), processing_class=tokenizer,
                         peft_config=lora)
    trainer.remove_callback(PrinterCallback)
    lora_tensors = init_lora(trainer.model)
    prepared = trainer.train_dataset
    rows = [list(r) for column in ("prompt_ids", "chosen_ids", "rejected_ids") for r in prepared[column]]
    captured, ends, peak = [], [], {}
    trainer.add_callback(trl_clock(a.device, a.warmup, memory, ends, captured, peak))
    trainer.train()
    return {"times": step_times(ends, a.warmup), "peak_mib": peak["mib"], "logs": captured,
            "lora_tensors": lora_tensors, "ids": ids_digest(rows)}


# ---- the parent: same data and model for both, report --------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="13m", help="Llama shape (13m: ~12.6M params)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs per step (per batch)")
    parser.add_argument("--prompt-len", type=int, default=64, help="prompt tokens")
    parser.add_argument("--response-len", type=int, default=64, help="tokens of each response (EOS included)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    add_common_arguments(parser, sorted(TOLERANCE))
    parser.add_argument("--data", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        import torch

        torch.set_num_threads(a.threads)
        result = laser_child(a) if a.child == "laser" else trl_child(a)
        print(json.dumps(result))
        return
    version = require_trl()
    header(a.threads)
    config = llama_config(**SHAPES[a.shape])
    params = count_params(config)
    print(f"trl {version} | model: Llama '{a.shape}', {params / 1e6:.1f}M parameters, {a.dtype}, random weights | "
          f"LoRA r{a.lora_r} alpha {a.lora_alpha} on {','.join(a.lora_targets)} | {a.pairs} pairs/step of "
          f"{a.prompt_len}+{a.response_len} tokens | sigmoid DPO beta {a.beta}, NLL 0 | AdamW lr {a.lr} | "
          f"device {a.device} | {a.warmup} warm-up + {a.steps} timed steps")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = save_policy(work / "model", config, a.dtype, a.device)
        (work / "pairs.json").write_text(json.dumps(make_pairs(a.pairs * (a.warmup + a.steps), a.prompt_len,
                                                               a.response_len)))
        common = ["--model-dir", folder, "--data", str(work / "pairs.json"), "--workdir", tmp]
        for flag in ("shape", "pairs", "prompt_len", "response_len", "warmup", "steps", "beta", "lr", "lora_r",
                     "lora_alpha", "dtype", "device", "threads"):
            common += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
        common += ["--lora-targets", *a.lora_targets]
        results = run_rounds(__file__, common, a.rounds)
    report(results, a)
    load_note()


def report(results: dict[str, dict], a: argparse.Namespace) -> None:
    laser, trl = results["laser"], results["trl"]
    rate = {}
    for name, label in (("laser", "laser (LaserModule step)"), ("trl", "TRL DPOTrainer")):
        r = results[name]
        step = statistics.median(r["times"])
        rate[name] = a.pairs / step
        memory = "peak GPU memory allocated" if a.device.startswith("cuda") else "peak RSS above imports"
        print(f"{label:25s}: {step * 1e3:8.1f} ms/step (median of {len(r['times'])} over {r['rounds']} runs; min {min(r['times']) * 1e3:.1f}, "
              f"max {max(r['times']) * 1e3:.1f}) = {rate[name]:6.2f} pairs/s | {memory} {r['peak_mib']:7.0f} MiB")
    first_l, first_t = laser["logs"][0], trl["logs"][0]
    tol = TOLERANCE[a.dtype]
    print("first batch:            loss       logps/chosen  logps/rejected")
    for label, log in (("laser", first_l), ("TRL", first_t)):
        print(f"  {label:6s}           {log['loss']:.6f}   {log['logps/chosen']:12.4f}  {log['logps/rejected']:12.4f}")
    gap = abs(first_l["loss"] - first_t["loss"])
    same_ids = laser["ids"] == trl["ids"] and laser["lora_tensors"] == trl["lora_tensors"]
    print(f"  |loss difference| {gap:.2e} (tolerance {tol:g}); same token ids and LoRA tensors on both sides: "
          f"{same_ids}; last timed step's loss: laser {laser['logs'][-1]['loss']:.6f}, TRL {trl['logs'][-1]['loss']:.6f}")
    verdict(f"equal work: same first-batch loss within {tol:g} (measured {gap:.2e}) and same token ids",
            gap <= tol and same_ids)
    speed = rate["laser"] / rate["trl"]
    memory_ratio = laser["peak_mib"] / trl["peak_mib"]
    print(f"ratios laser / TRL: pairs/s {speed:.2f}x | peak memory {memory_ratio:.3f} | fastest steps "
          f"{min(trl['times']) / min(laser['times']):.2f}x (less sensitive to load from other processes)")
    verdict(f"laser pairs/s >= 1.0x TRL's (measured {speed:.2f}x)", speed >= 1.0)
    verdict(f"laser peak memory <= 1.0x TRL's (measured {memory_ratio:.3f})", memory_ratio <= 1.0)


if __name__ == "__main__":
    main()
