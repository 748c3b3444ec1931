"""What the plan needs from a composed config: the step's shapes, the models' shapes and the device.

Nothing here loads weights: RMs are built as the run builds them (lazily, so no model loads), the
policy and RM architectures come from `laser.plan.shapes`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from laser.errors import LaserConfigError
from laser.plan.phases import StepShape
from laser.plan.shapes import model_config, tiny_policy_config
from laser.plan.trace import ModelSpec

GIB = 2**30
DEFAULT_DEVICE_GB = 80.0  # no GPU visible and no plan.device_memory_gb: an 80 GB H100 / A100


@dataclass
class PlannedRM:
    """One RM of the pool with a model: its adapter (built lazily, nothing loaded) and its shape."""

    name: str
    rm: Any
    spec: ModelSpec

    @property
    def batch_size(self) -> int:
        return int(self.rm.batch_size)

    @property
    def max_length(self) -> int:
        return int(self.rm.max_length)


@dataclass
class PlanInputs:
    """Everything the plan traces, read from one composed config."""

    policy: ModelSpec
    policy_name: str
    shape: StepShape
    context: Any  # the run's Context object when it reads the policy, else None
    rms: list[PlannedRM]
    rms_on_device: bool  # rm_pool.device is an accelerator (the RMs share it with the policy)
    placement: str  # rm_pool.placement: resident | offload | auto
    device_gb: float
    device_source: str
    reserve_gb: float
    vllm_fraction: float | None  # generation_backend=vllm: the share of the device its engine holds
    micro_batch_key: str = "laser.micro_batch_size"

    @property
    def usable(self) -> int:
        """Bytes the run may use: the device less the reserve."""
        return int((self.device_gb - self.reserve_gb) * GIB)


def step_shape(cfg: DictConfig, model_window: int | None = None) -> StepShape:
    """The step's sizes: prompts, samples, pairs, prompt and response tokens, micro-batch
    (`policy.max_prompt_tokens: null` is the model's window less the new tokens, as the policy reads it)."""
    from laser.policy.prompt_truncation import prompt_budget

    policy = cfg.policy
    prompt_tokens = OmegaConf.select(cfg, "plan.prompt_tokens", default=None) or prompt_budget(
        policy.get("max_prompt_tokens"), model_window, int(policy.max_new_tokens))
    eval_limit = OmegaConf.select(cfg, "data.eval_limit", default=None)
    eval_prompts = int(cfg.data.eval_batch_size) if eval_limit is None else min(int(cfg.data.eval_batch_size),
                                                                                  int(eval_limit))
    return StepShape(prompts=int(cfg.data.batch_size), samples=int(cfg.laser.num_samples),
                     pairs=int(cfg.laser.pairs_per_prompt), prompt_tokens=int(prompt_tokens),
                     new_tokens=int(policy.max_new_tokens),
                     micro_batch=OmegaConf.select(cfg, "laser.micro_batch_size", default=None),
                     temperature=float(policy.get("temperature", 1.0)), top_p=float(policy.get("top_p", 1.0)),
                     eval_prompts=eval_prompts,
                     prompts_per_generate=OmegaConf.select(cfg, "policy.prompts_per_generate", default=None))


def policy_spec(policy: DictConfig) -> tuple[ModelSpec, str]:
    """The policy's shape, dtype, LoRA and activation checkpointing, and its name."""
    if policy.get("model_name_or_path"):
        name = str(policy.model_name_or_path)
        config = model_config(name, bool(policy.get("trust_remote_code", False)))
    elif policy.get("tiny"):
        name, config = "tiny (built locally)", tiny_policy_config(OmegaConf.to_container(policy.tiny))
    else:
        raise LaserConfigError("memory plan: the policy has neither model_name_or_path nor tiny; a prebuilt "
                               "policy is planned by its folder: policy.model_name_or_path=<folder>")
    lora = OmegaConf.to_container(policy.lora) if policy.get("lora") is not None else {}
    return ModelSpec(config, "AutoModelForCausalLM", str(policy.get("dtype", "float32")), lora=lora,
                     checkpointing=bool(policy.get("activation_checkpointing", False))), name


def planned_context(context: DictConfig) -> Any:
    """The run's context object if it runs the policy (last_token, mean_embedding), else None."""
    from hydra.utils import get_object

    from laser.config.instantiate import instantiate
    from laser.selection.context import LastTokenContext, MeanEmbeddingContext

    target = get_object(context._target_)
    if isinstance(target, type) and issubclass(target, LastTokenContext | MeanEmbeddingContext):
        return instantiate(context)
    return None


def planned_rms(pool: DictConfig) -> list[PlannedRM]:
    """The pool's RMs that hold a Hugging Face model, a wrapped one (`NoisyRM(base=...)`) included;
    the others (verifiers, remote RMs) take no device memory."""
    from laser.config.instantiate import instantiate

    rms = []
    for name, entry in (pool.get("models") or {}).items():
        node = entry
        while node is not None and not _holds_hf_model(node):
            node = node.get("base") if isinstance(node, DictConfig) else None
        if node is None:
            continue
        rm = instantiate(node)
        spec = ModelSpec(model_config(rm.model_name_or_path, rm.trust_remote_code), rm.auto_class, rm.dtype)
        if getattr(rm, "reference_name_or_path", None):  # a DPO RM: its reference model too
            reference = ModelSpec(model_config(rm.reference_name_or_path, rm.trust_remote_code), rm.auto_class, rm.dtype)
            spec = ModelSpec(spec.config, spec.auto_class, spec.dtype, extra={"reference": reference})
        rms.append(PlannedRM(str(name), rm, spec))
    return rms


def _holds_hf_model(node: Any) -> bool:
    """A config node whose `_target_` is a Hugging Face RM class (`LazyHFRewardModel`)."""
    from hydra.utils import get_object

    from laser.rewards.hf_base import LazyHFRewardModel

    if not isinstance(node, DictConfig) or "_target_" not in node:
        return False
    target = get_object(node._target_)
    return isinstance(target, type) and issubclass(target, LazyHFRewardModel)


def device_memory(cfg: DictConfig) -> tuple[float, str]:
    """(GiB, where the figure comes from): plan.device_memory_gb, else the visible GPU, else 80."""
    import torch

    configured = OmegaConf.select(cfg, "plan.device_memory_gb", default=None)
    if configured:
        return float(configured), f"plan.device_memory_gb={configured}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.total_memory / GIB, f"visible GPU {props.name}"
    return DEFAULT_DEVICE_GB, "no GPU visible: the default"


def vllm_fraction(policy: DictConfig) -> float | None:
    """The share of the device vLLM's engine reserves (its `gpu_memory_utilization`), or None for hf."""
    if policy.get("generation_backend", "hf") != "vllm":
        return None
    from laser.policy.vllm_backend import VLLMSampler

    return float(inspect.signature(VLLMSampler.__init__).parameters["gpu_memory_utilization"].default)


def plan_inputs(cfg: DictConfig) -> PlanInputs:
    """Read everything the plan needs from a composed config (no weights load)."""
    spec, name = policy_spec(cfg.policy)
    pool = cfg.rm_pool
    device_gb, source = device_memory(cfg)
    has_key = OmegaConf.select(cfg, "laser.micro_batch_size", default="<absent>") != "<absent>"
    window = getattr(spec.config, "max_position_embeddings", None)
    return PlanInputs(policy=spec, policy_name=name, shape=step_shape(cfg, window), context=planned_context(cfg.context),
                      rms=planned_rms(pool), rms_on_device=str(pool.get("device", "cpu")) != "cpu",
                      placement=str(pool.get("placement", "resident")), device_gb=device_gb, device_source=source,
                      reserve_gb=float(OmegaConf.select(cfg, "plan.reserve_gb", default=2.0)),
                      vllm_fraction=vllm_fraction(cfg.policy),
                      micro_batch_key="laser.micro_batch_size" if has_key else "+laser.micro_batch_size")
