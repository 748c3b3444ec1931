"""What the vLLM backend serves, written as files vLLM reads: the merged base weights of a float32
policy after a refresh, and the policy's whole LoRA part (the live adapter, with a bfloat16 policy's
frozen history of earlier iterations, laser/policy/reference.py) as one peft adapter folder."""

from __future__ import annotations

import copy
from pathlib import Path

from laser.errors import LaserConfigError
from laser.policy.reference import ADAPTER, stacked_factors

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


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
