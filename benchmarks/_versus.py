"""What the two laser-vs-TRL benchmarks share (`dpo_vs_trl.py`, `online_vs_trl.py`): the TRL check,
one child process per system, peak memory, a seeded LoRA init both systems get, and laser built from
its own Hydra config.

laser's side is built in ONE place, `build_laser`, through `laser.run.build` (the function
`python -m laser.run` calls). Every laser module these benchmarks import is named in this file:
`laser.run` (`build`, `make_trainer`), `laser.step.module`, `laser.step.preference.preference_loss` (through
`laser_preference_loss`), `laser.tiny.build_tokenizer` and the RM class path `CLASSIFIER_RM`; if laser's
modules move, only this file changes. The scripts' laser children use, besides the config keys they
override, the module's `.configure_optimizers`, `.policy` and `.tracker`.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # the policy Llama shapes both scripts take (--shape); "13m": the anchor of issue #13
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=1000),
    "13m": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=4, vocab_size=32000),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),  # Llama-3.2-1B's shape
}
TRL_PIN = "1.16.0"  # the version these benchmarks were written and measured against (pyproject's `bench` extra)
CLASSIFIER_RM = "laser.rewards.classifier.ClassifierRM"  # laser's HF sequence-classifier RM (a config _target_)
NO_TRL = f"trl is not installed: pip install -e '.[bench]' (trl=={TRL_PIN}); nothing measured"


def trl_version() -> str | None:
    """The installed TRL's version, or None (the core install has no TRL)."""
    try:
        import trl
    except ImportError:
        return None
    return trl.__version__


def require_trl() -> str:
    """TRL's version; without TRL, say so and exit 2 (as gpu_check.sh does without a GPU)."""
    version = trl_version()
    if version is None:
        print(NO_TRL)
        sys.exit(2)
    if version != TRL_PIN:
        print(f"note: trl {version} installed; these benchmarks pin trl=={TRL_PIN} (figures may differ)")
    return version


def run_child(script: str, args: list[str]) -> dict:
    """Run `python <script> <args>` in a fresh process; its last stdout line is a JSON object."""
    cmd = [sys.executable, str(Path(script).resolve()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"child failed ({done.returncode}): {' '.join(cmd)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_rounds(script: str, args: list[str], rounds: int) -> dict[str, dict]:
    """Each system's child `rounds` times, in alternating order (laser, TRL, TRL, laser, ...), so that load
    from other processes on a shared machine falls on both alike. Per system: the step times of every
    round together, the largest peak memory, and the first round's other figures (equality checks)."""
    runs: dict[str, list[dict]] = {"laser": [], "trl": []}
    for r in range(rounds):
        for name in ("laser", "trl") if r % 2 == 0 else ("trl", "laser"):
            runs[name].append(run_child(script, ["--child", name, *args]))
    return {name: {**results[0], "times": [t for res in results for t in res["times"]],
                   "peak_mib": max(res["peak_mib"] for res in results), "rounds": len(results)}
            for name, results in runs.items()}


class PeakMemory:
    """Peak memory of a stretch of work in this process. On the CPU: resident set size (Linux VmHWM,
    reset through /proc/self/clear_refs), reported above the RSS after imports (as memory.py). On a
    GPU: `torch.cuda.max_memory_allocated` (weights, optimiser state and the step's transients)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.base_mib = 0.0 if self.cuda else self._status_kb("VmRSS") / 1024  # after imports

    @staticmethod
    def _status_kb(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")

    def reset(self) -> None:
        """Start measuring now (after setup and warm-up)."""
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:  # hand freed heap back to the OS (glibc), so both systems start alike
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS

    def peak_mib(self) -> float:
        """Peak since `reset`: GPU allocated MiB, or RSS MiB above the RSS after imports."""
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        return self._status_kb("VmHWM") / 1024 - self.base_mib


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tokenizer(texts: list[str], vocab_size: int):
    """laser's locally trained byte-level BPE tokenizer (`laser.tiny.build_tokenizer`); with no texts,
    one token per byte."""
    from laser.tiny import build_tokenizer

    return build_tokenizer(texts, vocab_size=vocab_size)


def save_random_model(folder: Path, model_class, config, tokenizer, dtype: str = "float32", device: str = "cpu",
                      seed: int = 0) -> str:
    """A randomly initialised `model_class(config)` built directly in `dtype` on `device` (a 1B model
    builds in seconds on a GPU, not in minutes on the CPU), saved with `tokenizer` as a Hugging Face
    folder that both systems load."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = model_class(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return str(folder)


def init_lora(model: torch.nn.Module, seed: int = 0, scale: float = 0.02) -> int:
    """Give both systems the same LoRA weights: every `lora_A` / `lora_B` parameter, in name order,
    drawn from one seeded stream. B is NOT zero, so the policy already differs from the reference
    (the adapter-disabled model) and the first loss depends on both forwards, not just log 2."""
    generator = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if ".lora_A." in name or ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
                count += 1
    if count == 0:
        raise RuntimeError("no LoRA parameters found")
    return count


def import_laser() -> None:
    """Import laser's entry point and the module it builds (and with them transformers, peft, Lightning,
    Hydra) before a memory baseline, so that the baseline holds the imports, not the work."""
    import transformers.models.llama.modeling_llama  # noqa: F401

    import laser.run  # noqa: F401
    import laser.step.module  # noqa: F401


def laser_preference_loss(module, prompt_ids: list[list[int]], response_ids: list[list[int]],
                          pairs: list[tuple[int, int, int]], n: int):
    """laser's step on `pairs` with the module's loss and micro-batch size, what `LaserModule` trains on
    (laser/step/preference.py): per-pair losses [P] and metrics, and `.backward(backward_fn)`, which
    accumulates the mean loss's gradient."""
    from laser.step.preference import MicroBatching, preference_loss

    return preference_loss(module.policy, prompt_ids, response_ids, pairs, n, module.loss,
                           MicroBatching(module.settings.micro_batch_size))


def trl_clock(device: str, warmup: int, memory: PeakMemory, ends: list[float], logs: list[dict], peak: dict):
    """A TRL (transformers Trainer) callback that records each step's end time into `ends`, starts the
    memory measure after `warmup` steps, keeps every log that has a loss, and the peak at the end."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            ends.append(time.perf_counter())
            if len(ends) == warmup:
                memory.reset()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                captured.append(dict(logs))

        def on_train_end(self, args, state, control, **kwargs):
            peak["mib"] = memory.peak_mib()

    captured = logs
    return Clock()


def build_laser(overrides: list[str], output_dir: Path) -> dict:
    """laser's components from its real config (conf/), as `python -m laser.run <overrides>` builds
    them: {"module": LaserModule, "datamodule", "task", "rm_pool", "selector"} (`laser.run.build`)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from laser.run import build

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    output_dir.mkdir(parents=True, exist_ok=True)
    return {**build(cfg, output_dir), "cfg": cfg}


def make_laser_trainer(cfg, output_dir: Path, callbacks: list):
    """laser's Lightning trainer for `cfg` (`laser.run.make_trainer`), with extra callbacks."""
    from laser.run import make_trainer

    trainer = make_trainer(cfg, output_dir)
    trainer.callbacks.extend(callbacks)
    return trainer


def add_common_arguments(parser, dtypes: list[str]) -> None:
    """The knobs both laser-vs-TRL scripts share: the step (beta, lr, LoRA), precision and device, threads,
    alternating rounds, and the hidden arguments of their child processes."""
    import argparse

    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-targets", nargs="+", default=["q_proj", "v_proj"])
    parser.add_argument("--dtype", choices=dtypes, default="float32")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2,
                        help="child processes per system, run in alternating order (laser, TRL, TRL, laser, ...)")
    parser.add_argument("--child", choices=["laser", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
