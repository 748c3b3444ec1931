"""vLLM as the policy's sampling backend (`policy.generation_backend=vllm`, GPU machines).

Same interface as `Policy.sample` (n responses per prompt, token ids cut after EOS). vLLM serves the
base weights plus the CURRENT LoRA adapter: before each call the adapter is saved to a temp folder
and passed as a new `LoRARequest`, so samples come from the policy being trained. A reference refresh
of a float32 policy merges the adapter into the base weights, so the engine is rebuilt from the merged
weights then; a bfloat16 policy keeps its base weights and stacks the adapter into a frozen history
(laser/policy/reference.py), which the saved adapter carries (rank r x (refreshes + 1)).
Greedy evaluation stays on Hugging Face `generate` (cheap next to training-time sampling).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path

from laser.errors import LaserConfigError
from laser.policy.reference import ADAPTER, HISTORY, stacked_factors

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


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


def export_adapter(policy, folder: Path) -> int:
    """Save the policy's whole LoRA part as ONE peft adapter folder (what vLLM adds to the base weights
    it serves): the live adapter, with a bfloat16 policy's frozen history of earlier iterations
    concatenated before it, at the live adapter's scale. Returns its rank."""
    from safetensors.torch import save_file

    tensors, ranks, scales = {}, set(), set()
    for name, layer in policy.lora_layers():
        lora_a, lora_b = stacked_factors(layer)
        tensors[f"{name}.lora_A.weight"] = lora_a.cpu().contiguous()
        tensors[f"{name}.lora_B.weight"] = lora_b.cpu().contiguous()
        ranks.add(lora_a.shape[0])
        scales.add(layer.scaling[ADAPTER])
    if len(ranks) != 1 or len(scales) != 1:
        raise LaserConfigError(f"policy.generation_backend=vllm needs one LoRA rank and scale for every layer "
                               f"(got ranks {sorted(ranks)}); drop rank_pattern / alpha_pattern from policy.lora")
    (rank,), (scale,) = ranks, scales
    config = copy.deepcopy(policy.model.peft_config[ADAPTER])
    config.r, config.lora_alpha, config.use_rslora = rank, scale * rank, False  # scale = lora_alpha / r
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return rank


def vllm_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds `rank`."""
    fits = [size for size in VLLM_LORA_RANKS if size >= rank]
    if not fits:
        raise LaserConfigError(f"the policy's LoRA (live + earlier iterations) has rank {rank}, above vLLM's largest "
                               f"max_lora_rank {VLLM_LORA_RANKS[-1]}: use policy.generation_backend=hf, fewer "
                               "iterations or a smaller policy.lora.r")
    return fits[0]


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
        """After a reference refresh. float32: serve the merged weights (the adapter was folded into
        them). bfloat16: the base weights are unchanged and the adapter grew by the stacked history;
        the engine is rebuilt only when that outgrows its max LoRA rank."""
        layers = [layer for _, layer in self.policy.lora_layers()]
        if not any(HISTORY in layer.lora_A for layer in layers):
            merged = export_merged(self.policy, self.folder / f"merged-{len(self.policy.merged_adapters)}")
            self.base_path, self.engine = str(merged), None
            return
        rank = max(layer.lora_A[HISTORY].weight.shape[0] + layer.r[ADAPTER] for layer in layers if HISTORY in layer.lora_A)
        if rank > self.max_lora_rank:
            self.max_lora_rank, self.engine = vllm_lora_rank(rank), None

    def sample(self, prompt_ids: list[list[int]], n: int, max_new_tokens: int, temperature: float,
               top_p: float, stop: Sequence[str] = ()) -> list[list[int]]:
        if self.engine is None:
            self.engine = self.vllm.LLM(model=self.base_path, enable_lora=True, max_lora_rank=self.max_lora_rank,
                                        gpu_memory_utilization=self.memory)
        from vllm.lora.request import LoRARequest

        self.requests += 1
        adapter = self.folder / f"adapter-{self.requests}"
        export_adapter(self.policy, adapter)
        # `stop`: the task's stop strings. vLLM ends there and returns the tokens generated so far; the
        # policy cuts them at the stop (laser/policy/stopping.py), as it does Hugging Face's.
        params = self.vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                          stop=list(stop) or None)
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = self.engine.generate(prompts, params, lora_request=LoRARequest("policy", self.requests, str(adapter)))
        return [list(completion.token_ids) for output in outputs for completion in output.outputs]
