"""vLLM as the policy's sampling backend (`policy.generation_backend=vllm`, GPU machines).

Same interface as `Policy.sample` (n responses per prompt, token ids cut after EOS). vLLM serves the
base weights plus the CURRENT LoRA adapter: before each call the adapter is saved to a temp folder
and passed as a new `LoRARequest`, so samples come from the policy being trained. A reference refresh
merges the adapter into the base weights, so the engine is rebuilt from the merged weights then.
Greedy evaluation stays on Hugging Face `generate` (cheap next to training-time sampling).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from laser.errors import LaserConfigError


def require_vllm():
    """The vllm module, or one clear line saying how to get it."""
    try:
        import vllm
    except ImportError as error:
        raise LaserConfigError("policy.generation_backend=vllm needs vLLM (a GPU machine): pip install -e '.[vllm]'; "
                               "or use policy.generation_backend=hf") from error
    return vllm


def export_merged(policy, folder: Path) -> Path:
    """Save the policy's base weights (with every merged adapter folded in) as a plain HF model folder:
    the base is still wrapped by peft's LoRA layers, so their `base_layer` weights are unwrapped."""
    base = policy.model.get_base_model()
    state = {k.replace(".base_layer", ""): v for k, v in base.state_dict().items() if "lora_" not in k}
    base.save_pretrained(folder, state_dict=state)
    policy.tokenizer.save_pretrained(folder)
    return folder


class VLLMSampler:
    """Samples with vLLM from the base model (path) plus the policy's live LoRA adapter."""

    def __init__(self, policy, gpu_memory_utilization: float = 0.3, max_lora_rank: int = 64) -> None:
        self.vllm = require_vllm()
        self.policy = policy
        self.memory, self.max_lora_rank = gpu_memory_utilization, max_lora_rank
        self.folder = Path(tempfile.mkdtemp(prefix="laser-vllm-"))
        self.engine, self.requests = None, 0
        self.base_path = policy.model_name_or_path

    def rebuild(self) -> None:
        """After a reference refresh: serve the merged weights (the adapter was folded into them)."""
        merged = export_merged(self.policy, self.folder / f"merged-{len(self.policy.merged_adapters)}")
        self.base_path, self.engine = str(merged), None

    def sample(self, prompt_ids: list[list[int]], n: int, max_new_tokens: int, temperature: float,
               top_p: float, stop: Sequence[str] = ()) -> list[list[int]]:
        if self.engine is None:
            self.engine = self.vllm.LLM(model=self.base_path, enable_lora=True, max_lora_rank=self.max_lora_rank,
                                        gpu_memory_utilization=self.memory)
        from vllm.lora.request import LoRARequest

        self.requests += 1
        adapter = self.folder / f"adapter-{self.requests}"
        self.policy.model.save_pretrained(adapter)
        # `stop`: the task's stop strings. vLLM ends there and returns the tokens generated so far; the
        # policy cuts them at the stop (laser/policy/stopping.py), as it does Hugging Face's.
        params = self.vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                          stop=list(stop) or None)
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = self.engine.generate(prompts, params, lora_request=LoRARequest("policy", self.requests, str(adapter)))
        return [list(completion.token_ids) for output in outputs for completion in output.outputs]
