"""vLLM as the policy's sampling backend (`policy.generation_backend=vllm`, GPU machines).

Same interface as `Policy.sample` (n responses per prompt, token ids cut after EOS). vLLM serves the
base weights plus the CURRENT LoRA adapter, so samples come from the policy being trained. A float32
policy's reference refresh merges the adapter into the base weights, so the engine is rebuilt on the
merged weights; a bfloat16 policy keeps its base weights and stacks the adapter into a frozen history
(laser/policy/reference.py), which the saved adapter carries (rank r x (refreshes + 1)): its engine is
rebuilt only when that rank outgrows the engine's max_lora_rank. Greedy evaluation stays on Hugging
Face `generate` (cheap next to training-time sampling). The files: laser/policy/vllm_export.py.

Disk and GPU memory stay constant over a run, however many steps and refreshes it has:
- The adapter: ONE folder (`adapter/`, ~27 MB for Llama-3-8B at r=16), rewritten in place before each
  call and handed to vLLM as a `LoRARequest` with a new id. vLLM caches adapters by id (an LRU of
  `max_loras` slots on the GPU, `max_cpu_loras` in host memory, 1 each by default), so a new id makes it
  read the folder again and evicts the previous adapter.
- The merged weights (float32): a reference refresh folds the adapter into the base weights, which vLLM can only
  serve from a model folder. They go to ONE folder (`merged/`): the old engine is released first, then
  the previous export is deleted, then the new one written (the peak is one export, 16 GB for
  Llama-3-8B in bf16, not two), and the next call starts an engine on it. Loading the weights into
  the running engine instead (TRL's colocate mode) would skip the export, but it reaches into vLLM
  internals that moved between releases (V0's in-process `model_executor.driver_worker`, V1's engine
  core in another process, LoRA-wrapped layers renaming the weights), so laser rebuilds, once per
  refresh.
- The engine: the old one is shut down and its GPU memory freed before a new one starts
  (`VLLMSampler.release`), so two never hold GPU memory at once.
Both folders live in one temp folder (TMPDIR chooses where), removed by `close()` or at exit.
"""


from __future__ import annotations

import gc
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch

from laser.errors import LaserConfigError
from laser.policy.reference import ADAPTER, HISTORY
from laser.policy.vllm_export import export_adapter, export_merged, vllm_lora_rank


def require_vllm():
    """The vllm module, or one clear line saying how to get it."""
    try:
        import vllm
    except ImportError as error:
        raise LaserConfigError("policy.generation_backend=vllm needs vLLM (a GPU machine): pip install -e '.[vllm]'; "
                               "or use policy.generation_backend=hf") from error
    return vllm


def rewrite_folder(folder: Path, write: Callable[[Path], object]) -> Path:
    """`write(folder)` into an emptied `folder`: the previous content is deleted first, so the disk
    never holds two versions (nothing reads the folder meanwhile: the engine that used it is gone)."""
    shutil.rmtree(folder, ignore_errors=True)
    write(folder)
    return folder


def shut_down(engine) -> None:
    """Stop a vLLM engine's workers: `LLM.shutdown` in recent vLLM, else the V1 engine-core process
    behind `LLM.llm_engine`; an in-process (V0) engine has none and is freed by garbage collection."""
    shutdown = getattr(engine, "shutdown", None)
    if shutdown is None:
        shutdown = getattr(getattr(getattr(engine, "llm_engine", None), "engine_core", None), "shutdown", None)
    if callable(shutdown):
        shutdown()


def free_gpu_memory() -> None:
    """After the last reference to an engine is dropped: collect it (its model, KV cache and CUDA
    graphs sit in reference cycles), drop vLLM's own parallel groups and return the cached blocks.
    vLLM's `cleanup_dist_env_and_memory` is not used: it also destroys torch.distributed's default
    process group, which under trainer=ddp is the trainer's."""
    gc.collect()
    try:
        from vllm.distributed.parallel_state import destroy_model_parallel
    except ImportError:
        destroy_model_parallel = None
    if destroy_model_parallel is not None:
        destroy_model_parallel()  # vLLM's tensor/pipeline-parallel groups; the next engine makes its own
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMSampler:
    """Samples with vLLM from the base model (path) plus the policy's live LoRA adapter."""

    def __init__(self, policy, gpu_memory_utilization: float = 0.3, max_lora_rank: int = 64) -> None:
        self.vllm = require_vllm()
        self.policy = policy
        self.memory, self.max_lora_rank = gpu_memory_utilization, max_lora_rank
        self.folder = Path(tempfile.mkdtemp(prefix="laser-vllm-"))
        self._remove_folder = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        self.engine, self.requests = None, 0
        self.base_path = policy.model_name_or_path

    def rebuild(self) -> None:
        """After a reference refresh. float32: serve the merged weights (the adapter was folded into
        them): the old engine goes first, then the old export; the new engine starts at the next call.
        bfloat16: the base weights are unchanged and the adapter grew by the stacked history; the engine
        is rebuilt only when that outgrows its max LoRA rank."""
        layers = [layer for _, layer in self.policy.lora_layers()]
        if not any(HISTORY in layer.lora_A for layer in layers):
            self.release()
            self.base_path = str(rewrite_folder(self.folder / "merged", partial(export_merged, self.policy)))
            return
        rank = max(layer.lora_A[HISTORY].weight.shape[0] + layer.r[ADAPTER] for layer in layers if HISTORY in layer.lora_A)
        if rank > self.max_lora_rank:
            self.release()
            self.max_lora_rank = vllm_lora_rank(rank)

    def release(self) -> None:
        """Shut down the engine, if one is running, and free its GPU memory."""
        engine, self.engine = self.engine, None
        if engine is None:
            return
        shut_down(engine)
        del engine  # the last reference: nothing holds the old engine now
        free_gpu_memory()

    def close(self) -> None:
        """Release the engine and delete the folders (also done at exit)."""
        self.release()
        self._remove_folder()

    def _start_engine(self):
        self.engine = self.vllm.LLM(model=self.base_path, enable_lora=True, max_lora_rank=self.max_lora_rank,
                                    gpu_memory_utilization=self.memory)
        return self.engine

    def _adapter_request(self):
        """The live adapter, saved over the previous one, under a new id (so vLLM reads it again)."""
        from vllm.lora.request import LoRARequest

        self.requests += 1
        adapter = self.folder / "adapter"
        rewrite_folder(adapter, partial(export_adapter, self.policy))
        return LoRARequest(f"policy-{self.requests}", self.requests, str(adapter))

    def sample(self, prompt_ids: list[list[int]], n: int, max_new_tokens: int, temperature: float,
               top_p: float, stop: Sequence[str] = ()) -> list[list[int]]:
        """n sampled responses per prompt (prompt-major), as token ids. `stop`: the task's stop strings;
        vLLM ends there and returns the tokens generated so far, and the policy cuts them at the stop
        (laser/policy/stopping.py), as it does Hugging Face's."""
        engine = self._start_engine() if self.engine is None else self.engine
        params = self.vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                          stop=list(stop) or None)
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = engine.generate(prompts, params, lora_request=self._adapter_request())
        return [list(completion.token_ids) for output in outputs for completion in output.outputs]
