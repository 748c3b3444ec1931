"""The vLLM sampling backend: its guard without vLLM, the merged weights it loads, and its contract with
vLLM checked without a GPU through a stand-in that does what vLLM does with what laser hands it."""

from __future__ import annotations

import copy
import json
import sys
import types
import weakref
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from laser.errors import LaserConfigError
from laser.policy.policy import Policy
from laser.tasks.arithmetic import Arithmetic
from laser.tiny import build_tiny_causal_lm


def test_vllm_backend_without_vllm_is_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    from laser.policy.vllm_backend import require_vllm

    with pytest.raises(LaserConfigError, match=r"generation_backend=vllm needs vLLM .*pip install"):
        require_vllm()


def test_merged_weights_exported_for_vllm_are_the_refreshed_policy(tmp_path):
    """After a reference refresh vLLM reloads the merged weights: they must score like the policy."""
    import torch
    from transformers import AutoModelForCausalLM

    from laser.policy.policy import Policy
    from laser.policy.vllm_backend import export_merged
    from laser.tasks.arithmetic import Arithmetic
    from laser.tiny import build_tiny_causal_lm

    policy = Policy(build_tiny_causal_lm(str(tmp_path), Arithmetic(num_train=20, num_test=4), hidden_size=16,
                                         num_layers=1, num_heads=2),
                    lora={"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    with torch.no_grad():
        for name, weight in policy.model.named_parameters():
            if "lora_B" in name:
                weight.add_(0.1)
    prompt = policy.unpadded_prompt_ids(policy.encode(["Q: What is 1 + 2?\nA:"]))
    expected = policy.response_logps(prompt, [[5, 6]]).detach()
    policy.refresh_reference()
    plain = AutoModelForCausalLM.from_pretrained(export_merged(policy, tmp_path / "merged"))
    logps = plain(torch.tensor([prompt[0] + [5, 6]])).logits.log_softmax(-1)[0]
    n = len(prompt[0])
    assert torch.allclose(logps[n - 1, 5] + logps[n, 6], expected[0], atol=1e-5)


# ---- the contract with vLLM ------------------------------------------------------------------------------


LORA = {"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@dataclass
class LoRARequest:  # vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: list[str] | None = None


class GreedyLLM:
    """vllm.LLM's interface, decoding greedily with transformers; records what it was given."""

    built: list[str] = []

    def __init__(self, model: str, enable_lora: bool, max_lora_rank: int, gpu_memory_utilization: float) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        assert enable_lora and max_lora_rank >= LORA["r"] and 0 < gpu_memory_utilization <= 1
        self.base = AutoModelForCausalLM.from_pretrained(model).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.eos = self.base.config.eos_token_id
        self.lora_ids: list[int] = []
        GreedyLLM.built.append(model)

    @torch.no_grad()
    def generate(self, prompts: list[dict], params: SamplingParams, lora_request: LoRARequest):
        from peft import PeftModel

        self.lora_ids.append(lora_request.lora_int_id)
        self.last_params = params
        model = PeftModel.from_pretrained(copy.deepcopy(self.base), lora_request.lora_path).eval()
        outputs = []
        for prompt in prompts:
            ids = torch.tensor([prompt["prompt_token_ids"]])
            # vLLM ends at a stop string and returns every token generated (its text, not its tokens, is cut)
            stops = {"stop_strings": params.stop, "tokenizer": self.tokenizer} if params.stop else {}
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=params.max_tokens, eos_token_id=self.eos, pad_token_id=0, **stops)
            tokens = out[0, ids.shape[1]:].tolist()
            completion = types.SimpleNamespace(token_ids=tokens)
            outputs.append(types.SimpleNamespace(outputs=[completion] * params.n))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = GreedyLLM, SamplingParams
    lora, request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    for name, module in {"vllm": vllm, "vllm.lora": lora, "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, module)
    GreedyLLM.built = []
    return vllm


def hf_greedy(policy: Policy, prompt_ids: list[list[int]], n: int, stop_strings: tuple[str, ...] = ()) -> list[list[int]]:
    """The live policy's greedy tokens, one unpadded prompt at a time."""
    tokens = []
    for ids in prompt_ids:
        enc = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        tokens += policy.sample(enc, n=n, greedy=True, stop_strings=stop_strings).response_ids
    return tokens


def perturb(policy: Policy, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, weight in policy.model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 4.0)


def test_vllm_backend_samples_from_the_live_policy_before_and_after_a_refresh(tmp_path, fake_vllm):
    path = build_tiny_causal_lm(str(tmp_path), Arithmetic(num_train=20, num_test=4), hidden_size=32,
                                num_layers=1, num_heads=2)
    policy = Policy(path, lora=LORA, max_new_tokens=5, generation_backend="vllm")
    enc = policy.encode(["Q: What is 1 + 2?\nA:", "Q: Is 7 larger than 3?\nA:"])
    prompt_ids = policy.unpadded_prompt_ids(enc)

    perturb(policy, seed=1)
    first = policy.sample(enc, n=3)  # training-time sampling: through the vLLM engine
    assert first.response_ids == hf_greedy(policy, prompt_ids, n=3)
    assert len(first.response_ids) == 6  # prompt-major, n per prompt

    policy.refresh_reference()  # the adapter is folded into the base: the engine must reload
    perturb(policy, seed=2)
    second = policy.sample(enc, n=3)
    assert second.response_ids == hf_greedy(policy, prompt_ids, n=3)
    assert second.response_ids != first.response_ids  # the perturbation changed the policy's answers

    assert GreedyLLM.built[0] == path and GreedyLLM.built[1].endswith("merged") and len(GreedyLLM.built) == 2
    assert policy.vllm.engine.lora_ids == [2]  # a fresh adapter id per request


def test_bf16_policy_after_a_refresh_samples_with_its_history_and_keeps_the_engine(tmp_path, fake_vllm):
    """bfloat16: the refresh stacks the adapter instead of merging it (laser/policy/reference.py), so the
    base vLLM serves is unchanged (no new engine) and the exported adapter carries the earlier iteration."""
    from transformers import AutoModelForCausalLM

    tiny = build_tiny_causal_lm(str(tmp_path), Arithmetic(num_train=20, num_test=4), hidden_size=32,
                                num_layers=1, num_heads=2)
    path = str(tmp_path / "bf16")
    AutoModelForCausalLM.from_pretrained(tiny).to(torch.bfloat16).save_pretrained(path)
    Policy(tiny).tokenizer.save_pretrained(path)
    policy = Policy(path, lora=LORA, max_new_tokens=5, generation_backend="vllm", dtype="bfloat16")
    enc = policy.encode(["Q: What is 1 + 2?\nA:", "Q: Is 7 larger than 3?\nA:"])
    prompt_ids = policy.unpadded_prompt_ids(enc)

    perturb(policy, seed=1)
    first = policy.sample(enc, n=2)
    policy.refresh_reference()
    assert policy.sample(enc, n=2).response_ids == first.response_ids  # the same policy, from its history
    perturb(policy, seed=2)
    second = policy.sample(enc, n=2)
    assert second.response_ids == hf_greedy(policy, prompt_ids, n=2)
    assert second.response_ids != first.response_ids
    assert GreedyLLM.built == [path]  # one engine: the base weights never changed
    assert json.loads((policy.vllm.folder / "adapter" / "adapter_config.json").read_text())["r"] == 2 * LORA["r"]


def test_vllm_backend_stops_at_the_stop_strings_and_cuts_as_hugging_face_does(tmp_path, fake_vllm):
    path = build_tiny_causal_lm(str(tmp_path), Arithmetic(num_train=20, num_test=4), hidden_size=32,
                                num_layers=1, num_heads=2)
    policy = Policy(path, lora=LORA, max_new_tokens=12, generation_backend="vllm")
    enc = policy.encode(["Q: What is 1 + 2?\nA:", "Q: Is 7 larger than 3?\nA:"])
    perturb(policy, seed=2)
    free = hf_greedy(policy, policy.unpadded_prompt_ids(enc), n=1)
    text = policy.tokenizer.decode(free[0], skip_special_tokens=True)
    stop = text[len(text) // 2:][:2]  # from the middle of the first answer: it ends there (or earlier)
    assert stop.strip(), f"the perturbed policy's answer has nothing to stop at: {text!r}"
    samples = policy.sample(enc, n=2, stop_strings=(stop,))
    assert samples.response_ids == hf_greedy(policy, policy.unpadded_prompt_ids(enc), n=2, stop_strings=(stop,))
    assert samples.num_stopped >= 2 and all(stop not in t for t in samples.texts)
    assert policy.vllm.engine.last_params.stop == [stop]  # vLLM itself stops there (SamplingParams.stop)


# ---- disk and GPU memory over a run ----------------------------------------------------------------


class RecordingLLM:
    """vllm.LLM's interface for a long run: reads the adapter folder when asked (as vLLM does for a new
    adapter id), answers with fixed tokens, and counts the engines alive and the ones shut down."""

    alive: weakref.WeakSet = weakref.WeakSet()
    most_alive = 0
    shut_down = 0

    def __init__(self, model: str, enable_lora: bool, max_lora_rank: int, gpu_memory_utilization: float) -> None:
        RecordingLLM.alive.add(self)
        RecordingLLM.most_alive = max(RecordingLLM.most_alive, len(RecordingLLM.alive))
        self.model = model
        self.adapters: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.cycle = self  # as vLLM's engine: held in reference cycles, freed only by garbage collection

    def generate(self, prompts: list[dict], params: SamplingParams, lora_request: LoRARequest):
        from safetensors.torch import load_file

        weights = load_file(f"{lora_request.lora_path}/adapter_model.safetensors")
        self.adapters.append((lora_request.lora_int_id, weights))
        completion = types.SimpleNamespace(token_ids=[5, 6])
        return [types.SimpleNamespace(outputs=[completion] * params.n) for _ in prompts]

    def shutdown(self) -> None:  # LLM.shutdown: the release hook laser must call
        RecordingLLM.shut_down += 1


@pytest.fixture
def recording_vllm(fake_vllm, monkeypatch):
    fake_vllm.LLM = RecordingLLM
    distributed, parallel_state = types.ModuleType("vllm.distributed"), types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.destroyed = 0

    def destroy_model_parallel() -> None:
        parallel_state.destroyed += 1

    parallel_state.destroy_model_parallel = destroy_model_parallel
    monkeypatch.setitem(sys.modules, "vllm.distributed", distributed)
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", parallel_state)
    RecordingLLM.alive, RecordingLLM.most_alive, RecordingLLM.shut_down = weakref.WeakSet(), 0, 0
    return parallel_state


def files_and_bytes(folder: Path) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((str(f.relative_to(folder)), f.stat().st_size) for f in folder.rglob("*") if f.is_file()))


def test_vllm_backend_keeps_disk_and_engines_constant_over_50_steps_and_3_refreshes(tmp_path, recording_vllm):
    """Each step saves the live adapter and each refresh exports the merged weights: the files laser
    writes stay the same set of the same sizes, each call sees the adapter of that step, and at most
    one engine is ever alive, the old one shut down (and vLLM's groups dropped) before the next."""
    policy = Policy(build_tiny_causal_lm(str(tmp_path), Arithmetic(num_train=20, num_test=4), hidden_size=32,
                                         num_layers=1, num_heads=2),
                    lora=LORA, max_new_tokens=5, generation_backend="vllm")
    enc = policy.encode(["Q: What is 1 + 2?\nA:", "Q: Is 7 larger than 3?\nA:"])
    sampler, refreshes = policy.vllm, {12, 25, 38}
    trees, engines = [], []
    for step in range(1, 51):
        perturb(policy, seed=step)  # stands in for a training step: a new adapter each time
        live = {k: v.clone() for k, v in policy.model.named_parameters() if "lora_" in k}
        assert len(policy.sample(enc, n=2).response_ids) == 4
        engine = sampler.engine
        engines.append(engine.model)
        seen_id, seen = engine.adapters[-1]
        assert seen_id == step  # a new id per call, so vLLM reads the rewritten folder again
        assert len(seen) == len(live) and all(
            torch.equal(seen[k], live[k.replace(".weight", ".default.weight")]) for k in seen)
        del engine
        trees.append(files_and_bytes(sampler.folder))
        if step in refreshes:
            policy.refresh_reference()

    assert RecordingLLM.most_alive == 1
    assert RecordingLLM.shut_down == 3 and recording_vllm.destroyed == 3  # one release per refresh
    assert len(set(engines)) == 2 and engines[12].endswith("merged")  # the base model, then the one export
    before, after = trees[:12], trees[12:]
    assert len(set(before)) == 1 and len(set(after)) == 1  # the same files, the same sizes, every step
    names = [name for name, _ in after[0]]
    assert {name.split("/")[0] for name in names} == {"adapter", "merged"}
    assert sum(name.endswith(".safetensors") for name in names) == 2  # one adapter, one merged model

    sampler.close()
    assert RecordingLLM.shut_down == 4 and sampler.engine is None and not sampler.folder.exists()
