#!/usr/bin/env bash
# GPU smoke benchmark at the paper's scale, with no hub access: an 8B-shaped Llama (Llama-3-8B dims:
# hidden 4096, 32 layers, 32 heads, 8 kv heads, intermediate 14336, vocab 128256) with random bf16
# weights built directly on the GPU. Prints, all within ~5 minutes on one H100/H200:
#   - generate tokens/s (4 prompts x n=8 samples in one call, 128 new tokens each), and the same
#     budget as 8 separate calls (benchmarks/sampling.py's ratio, where batching really pays: a GPU),
#   - RM scoring tokens/s (the same 8B trunk + a linear score head on the last token: the cost of an
#     8B-shaped sequence classifier, 32 sequences x 512 tokens),
#   - one LoRA DPO(+NLL) step (r16 q/v, reference = adapter disabled, 4 pairs x 512 tokens, AdamW),
#     and its peak GPU memory against the same step with a deep-copied reference (memory.py's target),
#   - laser's LinUCB select+update at d=4096, K=4 on this machine's CPU, as a share of that DPO step,
#   - the memory plan (python -m laser.plan) against the measured peak (torch.cuda.max_memory_allocated) of
#     generation and of the update, at Llama-3-8B widths with 4 layers (benchmarks/plan_check.py).
# Then, when trl is installed (pip install -e '.[bench]'), laser against TRL 1.16 at a Llama-3.2-1B shape in
# bf16 (benchmarks/dpo_vs_trl.py: 4 pairs x 256+256 tokens; benchmarks/online_vs_trl.py: 8 prompts x 2
# samples x 128 tokens), each system in its own process; without trl that part says so and is skipped.
#
#   bash benchmarks/gpu_check.sh                   # needs a CUDA GPU with >= ~60 GB free
#   GPU_CHECK_PAIRS=2 bash benchmarks/gpu_check.sh # a smaller DPO batch (less activation memory)
#   GPU_CHECK_CHECKPOINTING=1 bash benchmarks/gpu_check.sh   # activation checkpointing, as policy=llama3_8b
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SHAPE=tiny bash benchmarks/gpu_check.sh   # code-path test on a CPU
#   GPU_CHECK_TRL=0 bash benchmarks/gpu_check.sh   # skip the comparison with TRL
#
# Exits 2 with a message when no GPU is visible (nothing is measured then).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "command: bash benchmarks/gpu_check.sh $*"
python - "$@" <<'PY'
import copy, os, platform, statistics, sys, time, warnings

warnings.filterwarnings("ignore", category=FutureWarning)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
START = time.perf_counter()
try:
    import torch
except ImportError:
    sys.exit("gpu_check: torch is not installed: nothing measured")
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")
if DEVICE == "cuda" and not torch.cuda.is_available():
    print(f"gpu_check: no CUDA GPU visible (torch {torch.__version__}, built for CUDA {torch.version.cuda}; "
          "torch.cuda.is_available() is False): nothing measured. Run it on a machine with an NVIDIA GPU.")
    sys.exit(2)
sys.path.insert(0, os.getcwd())
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from laser.policy.logps import sequence_logps  # noqa: E402
from laser.policy.checkpointing import enable_activation_checkpointing  # noqa: E402
from laser.selection.linucb import LinUCB  # noqa: E402
from laser.step.losses import dpo_loss, nll_loss  # noqa: E402

TINY = os.environ.get("GPU_CHECK_SHAPE") == "tiny"
SHAPE = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=1000) if TINY else
         dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
              num_key_value_heads=8, vocab_size=128256))
PAIRS = int(os.environ.get("GPU_CHECK_PAIRS", "4"))
CHECKPOINTING = os.environ.get("GPU_CHECK_CHECKPOINTING", "0") == "1"  # policy.activation_checkpointing


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup=1, repeats=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gib():
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else float("nan")


gpu = torch.cuda.get_device_name() if DEVICE == "cuda" else "none (cpu test)"
print(f"machine: {platform.platform()} | CPUs {os.cpu_count()} | torch {torch.__version__} | CUDA "
      f"{torch.version.cuda} | device {DEVICE}: {gpu} | shape {'tiny (test)' if TINY else 'Llama-3-8B'}")
torch.manual_seed(0)
config = LlamaConfig(max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
                     pad_token_id=0, bos_token_id=1, eos_token_id=2, **SHAPE)
t = time.perf_counter()
torch.set_default_dtype(torch.bfloat16)  # parameters are created in bf16, on the device: no fp32 copy
with torch.device(DEVICE):
    model = LlamaForCausalLM(config).eval()
torch.set_default_dtype(torch.float32)
params = sum(p.numel() for p in model.parameters())
print(f"built {params / 1e9:.2f}B params ({next(model.parameters()).dtype}) in {time.perf_counter() - t:.1f} s; "
      f"GPU memory allocated {gib():.1f} GiB")
V = config.vocab_size


def ids(rows, cols):
    return torch.randint(3, V, (rows, cols), device=DEVICE)


# ---- generate: 4 prompts x n=8 in one call (num_return_sequences), EOS suppressed: a fixed budget ----
prompts, n, new = ids(4, 128), 8, 128
gen = dict(max_new_tokens=new, min_new_tokens=new, do_sample=True, temperature=0.8, num_return_sequences=n,
           pad_token_id=0, eos_token_id=2)
with torch.no_grad():
    t_gen = timed(lambda: model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), **gen),
                  warmup=1, repeats=2)
print(f"generate: {4 * n} sequences x {new} new tokens in {t_gen:.2f} s = {4 * n * new / t_gen:,.0f} tokens/s")
single = {**gen, "num_return_sequences": 1}
with torch.no_grad():  # the authors' code: one generate call per sample index (same token budget)
    t_sep = timed(lambda: [model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), **single)
                           for _ in range(n)], warmup=0, repeats=1)
print(f"sampling: {n} separate calls {t_sep:.2f} s / one batched call {t_gen:.2f} s = {t_sep / t_gen:.1f}x "
      f"(target >= 5x: {'PASS' if t_sep / t_gen >= 5 else 'FAIL'})")

# ---- RM scoring: 8B trunk + score head on each sequence's last token ----
head = torch.nn.Linear(config.hidden_size, 1, device=DEVICE, dtype=torch.bfloat16)
batch = ids(32, 512)
with torch.no_grad():
    t_rm = timed(lambda: head(model.model(input_ids=batch, use_cache=False).last_hidden_state[:, -1]).float().cpu())
print(f"RM scoring: 32 x 512 tokens in {t_rm:.2f} s = {32 * 512 / t_rm:,.0f} tokens/s; peak {gib():.1f} GiB")

# ---- one LoRA DPO(+NLL) step, reference = the same model with the adapter disabled ----
if CHECKPOINTING:
    enable_activation_checkpointing(model)
policy = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
policy.train()
optimiser = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=5e-6)
seqs = ids(2 * PAIRS, 512)  # chosen rows then rejected rows; 256 prompt + 256 response tokens each
mask = torch.zeros_like(seqs)
mask[:, 256:] = 1


KEPT = torch.arange(255, 512, device=DEVICE)  # positions as a tensor: a contiguous block for the LM head


def logps_of(model):  # as Policy.response_logps: logits for the response positions only (+1)
    return sequence_logps(model(input_ids=seqs, use_cache=False, logits_to_keep=KEPT).logits, seqs[:, -257:],
                          mask[:, -257:])


def adapter_reference():  # laser's reference: the policy with its adapter disabled
    with torch.no_grad(), policy.disable_adapter():
        return logps_of(policy)


def dpo_step(reference=adapter_reference):  # as LaserModule: the reference first
    ref = reference()
    logps = logps_of(policy)
    out = dpo_loss(logps[:PAIRS], logps[PAIRS:], ref[:PAIRS], ref[PAIRS:], beta=0.1)
    loss = (out.losses + nll_loss(logps[:PAIRS], mask[:PAIRS].sum(1))).mean()
    optimiser.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], 1.0)
    optimiser.step()


if DEVICE == "cuda":
    torch.cuda.reset_peak_memory_stats()
t_dpo = timed(dpo_step)
peak_adapter = gib()
print(f"LoRA DPO step (activation checkpointing {'on' if CHECKPOINTING else 'off'}): "
      f"{PAIRS} pairs x 512 tokens in {t_dpo:.2f} s ({2 * PAIRS * 512 / t_dpo:,.0f} tokens/s); "
      f"peak {peak_adapter:.1f} GiB")

# ---- benchmarks/memory.py's target on the GPU: the same step with a deep-copied reference (TRL) ----
copied = copy.deepcopy(policy).merge_and_unload().eval().requires_grad_(False)


def copied_reference():
    with torch.no_grad():
        return logps_of(copied)


if DEVICE == "cuda":
    torch.cuda.reset_peak_memory_stats()
dpo_step(copied_reference)
peak_copy = gib()
del copied
if DEVICE == "cuda":
    ratio = peak_adapter / peak_copy
    print(f"DPO-step peak GPU memory: adapter-disabled reference {peak_adapter:.1f} GiB / deep-copied reference "
          f"{peak_copy:.1f} GiB = {ratio:.3f} (target <= 0.6: {'PASS' if ratio <= 0.6 else 'FAIL'})")
else:
    print("DPO-step peak GPU memory: n/a (no CUDA memory statistics on this device)")

# ---- laser's LinUCB on this CPU at the 8B context size, against that step ----
d = config.hidden_size
bandit, xs = LinUCB(4), torch.nn.functional.normalize(torch.randn(8, d, dtype=torch.float64), dim=1)
it = iter(xs)
t_bandit = timed(lambda: (lambda x: bandit.update(bandit.select(x), x, 0.5))(next(it)), warmup=2, repeats=5)
print(f"LinUCB select+update d={d}, K=4 (CPU, {torch.get_num_threads()} threads): {t_bandit * 1e3:.1f} ms "
      f"= {t_bandit / t_dpo:.2%} of the DPO step (target <= 1%: {'PASS' if t_bandit / t_dpo <= 0.01 else 'FAIL'})")
print(f"total {time.perf_counter() - START:.0f} s")
PY

# ---- the memory plan against the measured peak of the step's phases (benchmarks/plan_check.py) ----
if [ "${GPU_CHECK_SHAPE:-}" = "tiny" ]; then PLAN_SHAPE=tiny; else PLAN_SHAPE=8b; fi
python benchmarks/plan_check.py --device "${GPU_CHECK_DEVICE:-cuda}" --shape "$PLAN_SHAPE"

# ---- laser against TRL on the same work (benchmarks/dpo_vs_trl.py, benchmarks/online_vs_trl.py) ----
if [ "${GPU_CHECK_TRL:-1}" = "0" ]; then
  echo "laser vs TRL: skipped (GPU_CHECK_TRL=0)"
elif ! python -c "import trl" 2>/dev/null; then
  echo "laser vs TRL: skipped (trl is not installed: pip install -e '.[bench]')"
else
  DEVICE="${GPU_CHECK_DEVICE:-cuda}"
  if [ "${GPU_CHECK_SHAPE:-}" = "tiny" ]; then  # the code path only, on whatever device was asked
    DPO=(--shape tiny --dtype float32 --pairs 2 --prompt-len 16 --response-len 16 --warmup 1 --steps 2)
    ONLINE=(--shape tiny --dtype float32 --prompts 2 --max-new-tokens 8 --warmup 1 --steps 2)
  else  # a Llama-3.2-1B shape in bf16: vocab 128k, where TRL's fused LM head and laser's logits_to_keep matter
    DPO=(--shape 1b --dtype bfloat16 --pairs 4 --prompt-len 256 --response-len 256 --warmup 2 --steps 5)
    ONLINE=(--shape 1b --dtype bfloat16 --prompts 8 --max-new-tokens 128 --warmup 1 --steps 4)
  fi
  started=$SECONDS
  python benchmarks/dpo_vs_trl.py --device "$DEVICE" --rounds 1 "${DPO[@]}"
  python benchmarks/online_vs_trl.py --device "$DEVICE" --rounds 1 "${ONLINE[@]}"
  echo "laser vs TRL: $((SECONDS - started)) s"
fi
echo "gpu_check total: ${SECONDS} s"
