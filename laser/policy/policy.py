"""The policy: a Hugging Face causal LM with a peft LoRA adapter.

Three jobs in the LASeR step: `embed` prompts (the bandit's context, no grad), `sample` n responses
per prompt in ONE batched `generate` call, and `response_logps` (summed log-probs of responses given
their prompts, under the policy or the reference; the update asks once per distinct response of its
pairs, in micro-batches: laser/step/microbatch.py). The reference model is the same network
with its live adapter off (`as_reference`), never a second copy; `refresh_reference` folds the adapter
into that (laser/policy/reference.py) and zeroes it: the policy becomes the next iteration's reference.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from laser.config.checks import check_values
from laser.distributed.sharding import assign, full_value, gathered
from laser.errors import LaserConfigError
from laser.hf import load_causal_lm, load_tokenizer
from laser.policy.checkpointing import enable_activation_checkpointing
from laser.policy.generation import generate_responses
from laser.policy.logps import sequence_logps
from laser.policy.prompt_truncation import encode_prompts, prompt_budget
from laser.policy.reference import live_adapter_off, refresh
from laser.policy.stopping import end_response


@dataclass
class Samples:
    """n sampled responses per prompt, flattened prompt-major: item i answers prompt i // n."""

    response_ids: list[list[int]]  # generated tokens, cut at the first EOS or stop string, EOS last (stopping.py)
    texts: list[str]  # decoded responses, special tokens removed
    num_generated_tokens: int
    num_truncated: int  # responses that hit max_new_tokens without an EOS or a stop string
    num_stopped: int = 0  # responses cut at one of the task's stop strings


class Policy(torch.nn.Module):
    """A causal LM + LoRA adapter (hub id or local path).

    Args:
        model_name_or_path: hub id (e.g. meta-llama/Meta-Llama-3-8B) or a local folder.
        tokenizer_name_or_path: defaults to the model's.
        lora: peft LoraConfig fields (r, lora_alpha, lora_dropout, target_modules).
        dtype: weights dtype: float32 on CPU; bfloat16 on GPUs (halves memory).
        max_prompt_tokens: prompt tokens kept (null: the model's window minus max_new_tokens).
        truncation_side, chat_template: how a prompt is cut to max_prompt_tokens ("left" or "middle")
            and whether it is a chat user turn first (`laser.policy.prompt_truncation`).
        max_new_tokens, temperature, top_p: sampling for training (paper: temperature 0.8).
        prompts_per_generate: prompts per HF generate call (None: the whole batch at once); less cuts the
            KV cache in proportion (laser/policy/generation.py).
        generation_backend: "hf" (transformers generate) or "vllm" (GPU machines with vLLM installed).
        trust_remote_code / allow_pickle_weights: off unless you trust the model (they can run its code).
    """

    def __init__(
        self,
        model_name_or_path: str,
        tokenizer_name_or_path: str | None = None,
        lora: dict | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        max_prompt_tokens: int | None = 512,
        max_new_tokens: int = 256,
        temperature: float = 0.8,
        top_p: float = 1.0,
        prompts_per_generate: int | None = None,
        generation_backend: str = "hf",
        allow_pickle_weights: bool = False,
        activation_checkpointing: bool = False,
        truncation_side: str = "left",
        chat_template: bool = False,
    ) -> None:
        super().__init__()
        check_values("policy", temperature=temperature, generation_backend=generation_backend,
                     max_new_tokens=max_new_tokens, prompts_per_generate=prompts_per_generate,
                     truncation_side=truncation_side, chat_template=chat_template)
        self.model_name_or_path = model_name_or_path
        self.tokenizer = load_tokenizer(tokenizer_name_or_path or model_name_or_path, trust_remote_code)
        self.tokenizer.padding_side = "left"  # generation continues from the last prompt token
        base = load_causal_lm(model_name_or_path, dtype, trust_remote_code, pad_token_id=self.tokenizer.pad_token_id,
                              allow_pickle_weights=allow_pickle_weights)
        lora = dict(lora or {})
        lora.setdefault("r", 16)
        lora.setdefault("lora_alpha", 32)
        lora.setdefault("lora_dropout", 0.1)
        lora.setdefault("target_modules", ["q_proj", "v_proj"])
        if activation_checkpointing:  # keep one tensor per layer; recompute the rest in backward
            enable_activation_checkpointing(base)
        self.model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **lora))
        self.keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
        self.max_prompt_tokens = prompt_budget(max_prompt_tokens, getattr(base.config, "max_position_embeddings", None),
                                               max_new_tokens)
        self.truncation_side, self.chat_template = truncation_side, chat_template
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.prompts_per_generate = prompts_per_generate
        self.vllm = None
        if generation_backend == "vllm":  # training-time sampling only; greedy evaluation stays on HF
            from laser.policy.vllm_backend import VLLMSampler

            self.vllm = VLLMSampler(self)
        # the LoRA weights of each reference refresh, replayed on resume (a few MB each, not the base)
        self.merged_adapters: list[dict[str, torch.Tensor]] = []

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- prompts ---------------------------------------------------------------------------------

    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise prompts once per step: left padded, cut to max_prompt_tokens on `truncation_side`,
        as a chat user turn with `chat_template` (`laser.policy.prompt_truncation`)."""
        enc = encode_prompts(self.tokenizer, prompts, self.max_prompt_tokens, self.truncation_side, self.chat_template)
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.no_grad()
    def embed(self, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-prompt context vectors [B, hidden]: the last layer's hidden state at the last prompt
        token (left padding puts it at position -1), under the current policy, no grad."""
        was_training = self.model.training
        self.model.eval()
        # the context is a hidden state: one position's logits, not [B, T, vocab] (GBs at 8B, 128k vocab)
        keep = {"logits_to_keep": 1} if self.keeps_logits else {}
        with gathered(self.model):  # sharded (trainer=fsdp): the whole model for this pass
            out = self.model(**enc, output_hidden_states=True, **keep)
        self.model.train(was_training)
        return out.hidden_states[-1][:, -1, :].float()

    # ---- sampling --------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, enc: dict[str, torch.Tensor], n: int, greedy: bool = False,
               stop_strings: Sequence[str] = ()) -> Samples:
        """n responses per prompt from one batched generate call (num_return_sequences=n; or one per
        `prompts_per_generate` prompts, laser/policy/generation.py); generation
        ends at EOS or at any of `stop_strings` (the task's), and each response is cut there."""
        if self.vllm is not None and not greedy:
            return self._finish(self.vllm.sample(self.unpadded_prompt_ids(enc), n, self.max_new_tokens,
                                                 self.temperature, self.top_p, stop=stop_strings), stop_strings)
        was_training = self.model.training
        self.model.eval()  # no LoRA dropout while sampling
        kwargs = {"do_sample": False} if greedy else {
            "do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
        }
        if stop_strings:  # transformers' StopStringCriteria matches them on the tokenizer's vocabulary
            kwargs.update(stop_strings=list(stop_strings), tokenizer=self.tokenizer)
        with gathered(self.model):  # sharded: ranks stop at different tokens, so no per-layer gathers
            generated = generate_responses(
                self.model, enc, 1 if greedy else n, self.prompts_per_generate, max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id, **kwargs)
        if greedy and n > 1:  # n greedy copies are identical, and generate refuses to make them
            generated = [tokens for tokens in generated for _ in range(n)]
        self.model.train(was_training)
        return self._finish(generated, stop_strings)

    def _finish(self, generated: list[list[int]], stop_strings: Sequence[str] = ()) -> Samples:
        """Cut each response at its first EOS or stop string (laser/policy/stopping.py) and decode once."""
        endings = [end_response(tokens, self.tokenizer, stop_strings) for tokens in generated]
        response_ids, reasons = [e.tokens for e in endings], [e.reason for e in endings]
        texts = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        return Samples(response_ids, texts, sum(e.generated for e in endings), reasons.count("length"),
                       reasons.count("stop"))

    # ---- log-probs -------------------------------------------------------------------------------

    def _batch(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Right-padded prompt+response ids with a mask over the response tokens."""
        rows = [p + r for p, r in zip(prompt_ids, response_ids, strict=True)]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        response_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
            ids[i, : len(p) + len(r)] = torch.tensor(p + r)
            attention[i, : len(p) + len(r)] = 1
            response_mask[i, len(p): len(p) + len(r)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": attention.to(self.device),
                "response_mask": response_mask.to(self.device)}

    def response_logps(
        self, prompt_ids: list[list[int]], response_ids: list[list[int]], reference: bool = False
    ) -> torch.Tensor:
        """Summed log-probs of each response given its prompt, [N]. `reference=True`: the reference
        model (`as_reference`), without grad. Logits are computed only from the
        shortest prompt's last token on (`logits_to_keep`): prompt positions need no vocabulary
        projection, and at a 128k vocabulary those logits would dominate the step's memory."""
        batch = self._batch(prompt_ids, response_ids)
        width = batch["input_ids"].shape[1]
        keep = width - min(len(p) for p in prompt_ids) + 1  # positions min_prompt-1 .. width-1
        inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if self.keeps_logits:  # else (an architecture without it) every position's logits, cut below
            # the positions as a tensor: the model gathers them into a contiguous block for the LM head (an int
            # slices a strided view, which torch's CPU matmul takes 1.6x longer on in float32, 10-160x in bf16)
            inputs["logits_to_keep"] = torch.arange(width - keep, width, device=batch["input_ids"].device)
        if reference:
            with self.as_reference():
                logits = self.model(**inputs).logits
        else:
            logits = self.model(**inputs).logits
        if logits.shape[1] != keep:  # a full-width slice would still cost a zero-filled gradient copy
            logits = logits[:, -keep:]
        tail = slice(width - keep, width)
        return sequence_logps(logits, batch["input_ids"][:, tail], batch["response_mask"][:, tail])

    def unpadded_prompt_ids(self, enc: dict[str, torch.Tensor]) -> list[list[int]]:
        """The prompt token ids without left padding, one list per prompt."""
        return [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True)]

    # ---- reference refresh and checkpoint state --------------------------------------------------

    def lora_layers(self) -> list[tuple[str, LoraLayer]]:
        return [(name, m) for name, m in self.model.named_modules() if isinstance(m, LoraLayer)]

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable LoRA weights (CPU copies)."""
        return {k: full_value(v.detach()).cpu().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    def load_adapter_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        missing = [k for k in state if k not in params]
        if missing:
            raise LaserConfigError(f"checkpoint adapter does not match the policy: unknown keys {missing[:3]}")
        with torch.no_grad():
            for key, value in state.items():
                assign(params[key], value)

    @contextmanager
    def as_reference(self) -> Iterator[None]:
        """The reference for the duration, without grad: the policy with its live adapter off and the
        earlier iterations on (merged in float32, stacked in bfloat16: laser/policy/reference.py)."""
        with torch.no_grad(), live_adapter_off(self.model, self.lora_layers()):
            yield

    @torch.no_grad()
    def refresh_reference(self) -> None:
        """Make the current policy the reference: fold each LoRA delta (B @ A * scale) into what the
        reference computes (float32: merged into the base weight; bfloat16: stacked into a frozen
        adapter, which keeps all of it), then zero B, so the policy with its live adapter off, and with
        it on, is the policy so far (laser/policy/reference.py: the precision, memory and compute)."""
        self.merged_adapters.append(self.adapter_state_dict())
        refresh(self.lora_layers())
        if self.vllm is not None:
            self.vllm.rebuild()

    @torch.no_grad()
    def replay_merges(self, merged_adapters: list[dict[str, torch.Tensor]]) -> None:
        """Rebuild the refreshed policy from a checkpoint's merge history (same ops, same order, so
        the result is bitwise identical on the same device)."""
        for state in merged_adapters:
            self.load_adapter_state_dict(state)
            refresh(self.lora_layers())
        self.merged_adapters = [dict(s) for s in merged_adapters]
