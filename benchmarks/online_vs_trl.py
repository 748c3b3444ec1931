"""The online loop (sample, score with one RM, pair, DPO step), laser against TRL's online DPO trainer:
prompts per second over the same prompts.

TRL 1.16 keeps its online DPO in `trl.experimental.online_dpo.OnlineDPOTrainer`. It always samples 2
responses per prompt and makes 1 pair per prompt (chosen = the higher reward; the first on a tie), with
no NLL term and no RM selection. laser is set to the same work: `bandit=single` (one fixed RM),
`laser.num_samples=2`, `laser.pairs_per_prompt=1`, `loss.nll_weight=0`. Both get:

- the same policy: a locally built Llama (random weights, no hub), the same LoRA (r, alpha, targets and
  the same seeded initial weights), the same dtype and torch threads, no activation checkpointing;
- the same RM: one locally built Llama sequence classifier (random weights), scoring prompt+response
  texts right-padded in one batch (laser's `ClassifierRM`; TRL's `reward_funcs` as a model);
- the same prompts in the same order (laser's arithmetic task batches, read from laser's data module
  and handed to TRL as a dataset, sequential sampler), the same batch size;
- the same sampling: one batched `generate` call of prompts x 2, temperature, top_p 1, top_k 50 (what
  laser's `generate` gets by default; TRL's default is 0), exactly `--max-new-tokens` tokens per response
  (EOS suppressed until then on both sides: min_new_tokens), so the token budget is equal;
- the same loss and update: sigmoid DPO (beta), reference = the adapter-disabled policy, AdamW (torch,
  not fused, constant lr, no weight decay), grad-norm clip 1.0, one optimizer step per batch.

What still differs is listed in benchmarks/README.md ("online_vs_trl"); in short: laser skips pairs whose
scores tie (the script checks that every prompt got its pair), logs ~17 metrics a step through Lightning
and a line to selections.jsonl; TRL computes full logits and a full-vocabulary log-softmax over prompt and
response positions. laser's end-of-iteration work (test-split evaluation, reference refresh, checkpoint)
falls after the timed steps and is not timed; TRL has none (save_strategy="no").

Each system runs in its own child process: `--warmup` untimed steps, then `--steps` timed steps; a step's
time runs from the end of the step before it to its own end (data loading and logging count).
prompts/s = prompts per step / median step time. Peak memory as dpo_vs_trl.py (RSS above imports on the
CPU, max_memory_allocated on a GPU), for information (no target).

    pip install -e '.[bench]'                  # trl==1.16.0
    python benchmarks/online_vs_trl.py         # ~13M-parameter policy, 4 prompts x 2 samples x 32 tokens, CPU
    python benchmarks/online_vs_trl.py --device cuda --dtype bfloat16 --shape 1b --max-new-tokens 128

Target: laser's prompts/s >= 1.0x TRL's. Exits 2 with a message when trl is not installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import count_params, header, llama_config, load_note, verdict
from _versus import SHAPES, add_common_arguments, require_trl, run_rounds

RM_SHAPE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4, vocab_size=300, num_labels=1)
TOP_K = 50  # transformers' default for do_sample, which laser's Policy.sample gets


def save_policy(folder: Path, config, dtype: str, device: str, seed: int = 0) -> str:
    """The policy both systems train, with a byte-level BPE tokenizer of min(vocab, 32000) tokens trained
    on random letter words (~2 s), so that sampled ids decode to text (a bytes-only tokenizer would decode
    most of a 32k vocabulary to nothing, and the RM would score empty, tied responses)."""
    import random

    from _versus import save_random_model, tokenizer
    from transformers import LlamaForCausalLM

    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(200_000)]
    bpe = tokenizer([" ".join(words[i:i + 50]) for i in range(0, len(words), 50)], min(config.vocab_size, 32000))
    return save_random_model(folder, LlamaForCausalLM, config, bpe, dtype, device, seed)


def save_rm(folder: Path, dtype: str, device: str, seed: int = 1) -> str:
    """The RM both systems score with: a randomly initialised Llama sequence classifier, bytes tokenizer."""
    from _versus import save_random_model, tokenizer
    from transformers import LlamaForSequenceClassification

    return save_random_model(folder, LlamaForSequenceClassification, llama_config(**RM_SHAPE),
                             tokenizer([], vocab_size=300), dtype, device, seed)


def step_times(ends: list[float], warmup: int) -> list[float]:
    return [b - a for a, b in zip(ends[warmup - 1:-1], ends[warmup:], strict=True)]


# ---- laser (the only function that imports laser: see _versus.build_laser) ---------------------------

def laser_child(a: argparse.Namespace) -> dict:
    import lightning as L
    import torch
    from _versus import (
        CLASSIFIER_RM,
        PeakMemory,
        build_laser,
        import_laser,
        init_lora,
        make_laser_trainer,
        sync,
    )

    import_laser()
    memory = PeakMemory(a.device)
    out = Path(a.workdir) / "laser-run"
    steps = a.warmup + a.steps
    rm = (f"{{_target_:{CLASSIFIER_RM},model_name_or_path:'{a.rm_dir}',batch_size:{2 * a.prompts},"
          f"max_length:4096,use_chat_template:false,device:{a.device},dtype:{a.dtype}}}")
    parts = build_laser([
        "policy=hf", f"policy.model_name_or_path={a.model_dir}", f"policy.dtype={a.dtype}",
        f"policy.lora.r={a.lora_r}", f"policy.lora.lora_alpha={a.lora_alpha}", "policy.lora.lora_dropout=0.0",
        f"policy.lora.target_modules=[{','.join(a.lora_targets)}]", f"policy.max_new_tokens={a.max_new_tokens}",
        f"policy.temperature={a.temperature}", "policy.top_p=1.0",
        "task=arithmetic_legacy", "rm_pool=tiny",  # the prompts and pool these figures were first measured on
        "rm_pool.models.arith_judge=null", "rm_pool.models.compare_judge=null", "rm_pool.models.noise=null",
        f"+rm_pool.models.rm={rm}", f"rm_pool.device={a.device}", "bandit=single", "bandit.arm=rm",
        "laser.num_samples=2", "laser.pairs_per_prompt=1", "loss.nll_weight=0.0", f"loss.beta={a.beta}",
        f"laser.lr={a.lr}", "laser.weight_decay=0.0", "laser.max_grad_norm=1.0", "laser.iterations=1",
        f"data.batch_size={a.prompts}", f"data.steps_per_iteration={steps}", f"data.eval_limit={a.prompts}",
        f"trainer.accelerator={'gpu' if a.device.startswith('cuda') else 'cpu'}", "trainer.enable_progress_bar=false",
        f"num_threads={a.threads}", f"paths.cache_dir={a.workdir}/cache", "seed=0",
    ], out)
    module, datamodule, task = parts["module"], parts["datamodule"], parts["task"]
    L.seed_everything(0, verbose=False)
    init_lora(module.policy.model)
    # a fixed token budget: EOS suppressed until max_new_tokens, as TRL's min_new_tokens below
    module.policy.model.get_base_model().generation_config.min_new_tokens = a.max_new_tokens
    datamodule.setup("fit")
    batches = [[task.format_prompt(e) for e in batch] for batch in datamodule.train_dataloader()]
    Path(a.prompts_file).write_text(json.dumps([p for batch in batches for p in batch]))
    seen, ends, pairs, finish = [], [], [], {}

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append([task.format_prompt(e) for e in batch])
            finish["skipped"] = sum(pl_module.tracker.skipped.values())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            sync(a.device)
            ends.append(time.perf_counter())
            trained = sum(pl_module.tracker.skipped.values()) == finish["skipped"]  # else: no pair, step skipped
            pairs.append(int(trainer.callback_metrics["train/pairs"]) if trained else 0)
            if len(ends) == a.warmup:
                memory.reset()
                pl_module.tracker.phase_seconds.clear()
            if len(ends) == steps:  # before the end-of-iteration evaluation and checkpoint
                finish.update(peak_mib=memory.peak_mib(), phases=dict(pl_module.tracker.phase_seconds))

    trainer = make_laser_trainer(parts["cfg"], out, [Clock()])
    torch.set_num_threads(a.threads)
    trainer.fit(module, datamodule=datamodule)
    tracker = module.tracker
    return {"times": step_times(ends, a.warmup), "peak_mib": finish["peak_mib"], "same_prompts": seen == batches,
            "generated_tokens": tracker.total_generated_tokens, "pairs": pairs, "skipped": dict(tracker.skipped),
            "phases": finish["phases"], "phase_window": sum(step_times(ends, a.warmup))}


# ---- TRL ---------------------------------------------------------------------------------------------

def trl_child(a: argparse.Namespace) -> dict:
    import torch
    from _versus import PeakMemory, init_lora, trl_clock
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        PrinterCallback,
    )
    from transformers.models.llama import modeling_llama  # noqa: F401 (imported before the memory baseline)
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    memory = PeakMemory(a.device)
    dtype = getattr(torch, a.dtype)
    steps = a.warmup + a.steps
    prompts = json.loads(Path(a.prompts_file).read_text())[: steps * a.prompts]
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=dtype).to(a.device)
    tokenizer = AutoTokenizer.from_pretrained(a.model_dir)
    rm = AutoModelForSequenceClassification.from_pretrained(a.rm_dir, dtype=dtype, num_labels=1).to(a.device)
    rm_tokenizer = AutoTokenizer.from_pretrained(a.rm_dir)
    args = OnlineDPOConfig(
        output_dir=str(Path(a.workdir) / "trl-run"), per_device_train_batch_size=a.prompts, max_steps=steps,
        learning_rate=a.lr, lr_scheduler_type="constant", optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
        beta=[a.beta], loss_type="sigmoid", max_new_tokens=a.max_new_tokens, max_length=4096,
        temperature=a.temperature, top_p=1.0, top_k=TOP_K, generation_kwargs={"min_new_tokens": a.max_new_tokens},
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=a.device == "cpu",
        train_sampling_strategy="sequential", logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )
    lora = LoraConfig(task_type="CAUSAL_LM", r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=0.0,
                      target_modules=list(a.lora_targets))
    trainer = OnlineDPOTrainer(model=model, reward_funcs=rm, args=args, train_dataset=Dataset.from_dict({"prompt": prompts}),
                               processing_class=tokenizer, reward_processing_classes=rm_tokenizer, peft_config=lora)
    trainer.remove_callback(PrinterCallback)
    init_lora(trainer.model)
    ends, captured, peak = [], [], {}
    trainer.add_callback(trl_clock(a.device, a.warmup, memory, ends, captured, peak))
    torch.set_num_threads(a.threads)
    trainer.train()
    return {"times": step_times(ends, a.warmup), "peak_mib": peak["mib"], "logs": captured}


# ---- the parent --------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="13m", help="policy Llama shape")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (batch size)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens per response (fixed budget)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    add_common_arguments(parser, ["float32", "bfloat16"])
    parser.add_argument("--rm-dir", help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        import torch

        torch.set_num_threads(a.threads)
        print(json.dumps(laser_child(a) if a.child == "laser" else trl_child(a)))
        return
    version = require_trl()
    header(a.threads)
    config = llama_config(**SHAPES[a.shape])
    print(f"trl {version} (trl.experimental.online_dpo.OnlineDPOTrainer) | policy: Llama '{a.shape}', "
          f"{count_params(config) / 1e6:.1f}M parameters, {a.dtype}, random weights | RM: Llama classifier, hidden "
          f"{RM_SHAPE['hidden_size']}, {RM_SHAPE['num_hidden_layers']} layers | {a.prompts} prompts/step x 2 samples x "
          f"{a.max_new_tokens} tokens, 1 pair/prompt | LoRA r{a.lora_r} on {','.join(a.lora_targets)} | sigmoid DPO "
          f"beta {a.beta} | device {a.device} | {a.warmup} warm-up + {a.steps} timed steps")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        common = ["--model-dir", save_policy(work / "policy", config, a.dtype, a.device), "--rm-dir",
                  save_rm(work / "rm", a.dtype, a.device), "--prompts-file", str(work / "prompts.json"), "--workdir", tmp]
        for flag in ("shape", "prompts", "max_new_tokens", "temperature", "warmup", "steps", "beta", "lr", "lora_r",
                     "lora_alpha", "dtype", "device", "threads"):
            common += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
        common += ["--lora-targets", *a.lora_targets]
        results = run_rounds(__file__, common, a.rounds)  # laser runs first: it writes the prompt batches
    report(results, a)
    load_note()


def report(results: dict[str, dict], a: argparse.Namespace) -> None:
    laser, trl = results["laser"], results["trl"]
    rate = {}
    memory = "peak GPU memory allocated" if a.device.startswith("cuda") else "peak RSS above imports"
    for name, label in (("laser", "laser (bandit=single)"), ("trl", "TRL OnlineDPOTrainer")):
        r = results[name]
        step = statistics.median(r["times"])
        rate[name] = a.prompts / step
        print(f"{label:22s}: {step * 1e3:8.1f} ms/step (median of {len(r['times'])} over {r['rounds']} runs; min {min(r['times']) * 1e3:.1f}, "
              f"max {max(r['times']) * 1e3:.1f}) = {rate[name]:6.2f} prompts/s | {memory} {r['peak_mib']:7.0f} MiB")
    phases, total = laser["phases"], laser["phase_window"]  # the first run's timed steps
    shares = {**phases, "other (pairing, logging, Lightning)": total - sum(phases.values())}
    print("laser's timed steps by phase: " + ", ".join(f"{k} {v / total:.0%}" for k, v in shares.items()))
    budget = (a.warmup + a.steps) * a.prompts * 2 * a.max_new_tokens
    trl_eos = [log.get("val/contain_eos_token", 0.0) for log in trl["logs"]]
    print(f"equal work: same prompt batches {laser['same_prompts']}; laser generated {laser['generated_tokens']} tokens "
          f"(budget {budget}); TRL completions with an EOS (cut short): {max(trl_eos):.0%}; pairs per step: laser "
          f"{laser['pairs']} (ties are skipped), TRL {a.prompts} (always one per prompt)")
    equal = laser["same_prompts"] and laser["generated_tokens"] == budget and max(trl_eos) == 0.0 \
        and all(p == a.prompts for p in laser["pairs"])
    verdict("equal work: same prompts, same token budget on both sides, a pair for every prompt", equal)
    speed = rate["laser"] / rate["trl"]
    print(f"ratios laser / TRL: prompts/s {speed:.2f}x | peak memory {laser['peak_mib'] / trl['peak_mib']:.3f} "
          f"(no target) | fastest steps {min(trl['times']) / min(laser['times']):.2f}x (less sensitive to load)")
    verdict(f"laser prompts/s >= 1.0x TRL's online DPO (measured {speed:.2f}x)", speed >= 1.0)


if __name__ == "__main__":
    main()
