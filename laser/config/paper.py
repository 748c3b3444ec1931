"""The paper's settings, written down once, with the source of each value and every recorded deviation.

`SETTINGS` holds one row per setting: the config key it lives at (data: a key that moves is a one-line
change here), the experiments it applies to, the paper's value and where that value comes from: the
paper (LASeR, arXiv 2410.01735), the authors' code (github.com/duykhuongnguyen/LASeR-MAB, `scripts/`),
or "our choice, because ..." where neither states it. A `Deviation` records where laser's paper
configs use another value on purpose: which value, why, and the override that restores the paper's.

`tests/config/test_paper_settings.py` composes every paper experiment (each job of its sweep) and fails
when a composed value differs from its row without a recorded deviation, or when a recorded deviation
no longer happens. The README's "Deviations from the paper" table is `deviations_markdown()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

# The paper experiments (conf/experiment/<name>.yaml); CPU twins (*_cpu, cpu_table, legacy_miniature) are not.
REASONING = ("gsm8k", "reasoning_table", "efficiency_table", "noisy_rms", "selection_by_task",
             "ablation_bandits", "ablation_contexts", "ablation_rewards")
INSTRUCTION = ("instruction_following",)
PAPER_EXPERIMENTS = REASONING + INSTRUCTION


@dataclass(frozen=True)
class Deviation:
    """laser's paper configs use `value` instead of the paper's, in `experiments`, because `why`;
    `restore` is the override that brings the paper's value back."""

    value: Any
    why: str
    restore: str
    experiments: tuple[str, ...] = PAPER_EXPERIMENTS


@dataclass(frozen=True)
class Setting:
    """One setting of the paper: `key` in the composed config (`*` stands for every child of a node, in
    order, e.g. `rm_pool.models.*.model_name_or_path`), the paper's value, its source, the experiments
    it applies to and any recorded deviations."""

    name: str
    key: str
    paper: Any
    source: str
    experiments: tuple[str, ...] = PAPER_EXPERIMENTS
    deviations: tuple[Deviation, ...] = ()

    def deviation_for(self, experiment: str) -> Deviation | None:
        """The deviation recorded for `experiment`, if any."""
        return next((d for d in self.deviations if experiment in d.experiments), None)


# ---- the table ----------------------------------------------------------------------------------------

CODE = "authors' code"
REASONING_RMS = ["HuggingFaceH4/zephyr-7b-alpha", "Qwen/Qwen1.5-7B-Chat", "openbmb/Eurus-7b-kto",
                 "allenai/OLMo-7B-0724-Instruct-hf"]
INSTRUCTION_RMS = ["Skywork/Skywork-Reward-Llama-3.1-8B", "sfairXC/FsfairX-LLaMA3-RM-v0.1",
                   "Ray2333/GRM-Llama3-8B-rewardmodel-ft"]
LORA = f"paper; {CODE}, model/lora_model.py"
LINUCB = f"paper; {CODE}, utils/linucb.py"

SETTINGS: tuple[Setting, ...] = (
    Setting("policy", "policy.model_name_or_path", "meta-llama/Meta-Llama-3-8B",
            f"paper; {CODE}, config.yaml"),
    Setting("supervised warm start before preference training", "policy.warm_start.steps",
            "SFT on the task's training split", f"paper (its SFT row); the {CODE} starts from the base model",
            deviations=(Deviation(
                0, "an 8B SFT belongs in a fine-tuning stack: laser's warm start tunes every weight and was "
                   "written for the tiny policy (about a day at 8B); the report calls iteration 0 "
                   "\"no warm start\"", "policy.model_name_or_path=<your SFT checkpoint>"),)),
    Setting("LoRA rank", "policy.lora.r", 16, LORA),
    Setting("LoRA alpha", "policy.lora.lora_alpha", 32, LORA),
    Setting("LoRA dropout", "policy.lora.lora_dropout", 0.1, LORA),
    Setting("LoRA targets", "policy.lora.target_modules", ["q_proj", "v_proj"], LORA),
    Setting("learning rate", "laser.lr", 5.0e-6, f"paper; {CODE}, config.yaml"),
    Setting("weight decay", "laser.weight_decay", 0.0, f"{CODE} (torch Adam, no weight decay)"),
    Setting("gradient clipping (max norm; 0: none)", "laser.max_grad_norm", 0, f"{CODE} (max_grad_norm=None)",
            deviations=(Deviation(
                1.0, "our choice: TRL's default; caps one outsized update from a long or badly ranked pair",
                "laser.max_grad_norm=0"),)),
    Setting("iterations", "laser.iterations", 10, f"paper; {CODE}, config.yaml"),
    Setting("samples per prompt", "laser.num_samples", 30, f"paper; {CODE}, config.yaml (n_responses)"),
    Setting("pairs per prompt", "laser.pairs_per_prompt", 10,
            f"paper; {CODE}, utils/preference_pair_generator.py"),
    Setting("DPO beta", "loss.beta", 0.1, f"{CODE}, utils/llm_trainer.py"),
    Setting("DPO label smoothing", "loss.label_smoothing", 0.0, f"{CODE} (the plain DPO loss)"),
    Setting("NLL weight", "loss.nll_weight", 1.0, f"paper (DPO + NLL); {CODE} (sft_weight=1.0)", REASONING),
    Setting("NLL weight", "loss.nll_weight", 0, "paper (DPO only for instruction following)", INSTRUCTION),
    Setting("reference refreshed every iteration", "laser.refresh_reference", True,
            f"paper (iterative DPO); {CODE} (sync_reference_model)"),
    Setting("temperature", "policy.temperature", 0.8, f"paper; {CODE}, config.yaml"),
    Setting("top_p", "policy.top_p", 0.9,
            f"{CODE}: it sets none, so Meta-Llama-3-8B's generation_config.json (top_p 0.9) applies"),
    Setting("max new tokens", "policy.max_new_tokens", 150,
            f"{CODE}, model/response_generator.py (its first release: max_length=150, prompt included)",
            REASONING, deviations=(Deviation(
                512, "a chain cut before its `Final answer:` line cannot be graded and trains on cut "
                     "text: ~3% of GSM8K's reference solutions are already longer than 150 word pieces (a "
                     "proxy for tokens); costs up to 3.4x the tokens of responses that do not stop",
                "policy.max_new_tokens=150", REASONING),)),
    Setting("max new tokens", "policy.max_new_tokens", 512,
            "our choice, because the instruction-following code is not released: open-ended answers "
            "(AlpacaEval's references average ~2,000 characters)", INSTRUCTION),
    Setting("prompts per batch", "data.batch_size", 16,
            f"paper; {CODE}, config.yaml (its trainer steps the optimiser once per pair, laser once "
            "per batch)"),
    Setting("steps per iteration (null: one pass over the training set)", "data.steps_per_iteration", None,
            f"{CODE}, train_and_infer.py (an iteration is one pass over the training split)"),
    Setting("one category per batch", "data.group_by_category", False,
            f"{CODE} (batches are consecutive slices of a shuffled split)",
            deviations=(Deviation(
                True, "the experiment asks which RM LASeR picks per MMLU subject, and a batch of 16 mixed "
                      "subjects is none of them (GSM8K and StrategyQA have one category: no change there)",
                "data.group_by_category=false", ("selection_by_task",)),)),
    Setting("bandit", "bandit._target_", "laser.selection.linucb.LinUCB",
            f"paper (LinUCB, disjoint arms); {CODE}, utils/linucb.py"),
    Setting("LinUCB alpha", "bandit.alpha", 0.1, LINUCB),
    Setting("LinUCB lambda", "bandit.ridge_lambda", 1.0, f"paper; {CODE} (A starts at the identity)"),
    Setting("LinUCB forced exploration pulls", "bandit.explore_pulls", 0, "paper (plain LinUCB)"),
    Setting("one RM per", "bandit.granularity", "batch",
            f"paper (the batch's mean context); {CODE}: per batch at first, per prompt by default later"),
    Setting("bandit reward", "selector_reward._target_",
            "laser.selection.selector_reward.negative_loss.NegativeLoss",
            f"paper (minus the training loss); {CODE}, train_and_infer.py"),
    Setting("bandit reward term", "selector_reward.term", "total", f"{CODE} (the whole loss: DPO + NLL)"),
    Setting("reward normaliser, low quantile", "selector_reward.normaliser.low_quantile", 0.2, LINUCB),
    Setting("reward normaliser, high quantile", "selector_reward.normaliser.high_quantile", 0.8, LINUCB),
    Setting("bandit context", "context._target_", "laser.selection.context.LastTokenContext",
            f"paper (the policy's last-token state); the {CODE} averages input embeddings "
            "(context=mean_embedding)"),
    Setting("context projection (null: d = the policy's hidden size)", "context.dim", None,
            f"paper; {CODE} (LinUCB(d=hidden_size))"),
    Setting("RMs", "rm_pool.models.*.model_name_or_path", REASONING_RMS,
            f"paper; the {CODE} loads HuggingFaceH4/zephyr-7b-beta under the name Zephyr-7B-Alpha",
            REASONING),
    Setting("RM scores", "rm_pool.models.*._target_", ["laser.rewards.likelihood.LikelihoodRM"] * 4,
            f"{CODE}, utils/reward_model.py (an LM's mean token log-likelihood)", REASONING),
    Setting("RMs", "rm_pool.models.*.model_name_or_path", INSTRUCTION_RMS,
            "our choice, because neither the paper's text nor its code release names them: three 8B "
            "RewardBench classifiers", INSTRUCTION),
)

# A sweep's axes: a swept key (hydra.sweeper.params), the config keys its choice decides, and the choice that
# is the paper's LASeR run. Jobs that choose something else are the experiment's comparison rows (a baseline,
# another context, a noisier pool), so their values under those keys are not held to the paper's. A baseline
# bandit may bring its own arm (bandit=oracle adds the gold verifier to the pool): the LASeR job checks the
# pool.
AXES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "bandit": (("bandit", "rm_pool"), "linucb"),
    "+method": (("bandit", "selector_reward"), "linucb_paper"),
    "context": (("context",), "last_token"),
    "context.dim": (("context.dim",), "null"),
    "rm_pool": (("rm_pool",), "reasoning_7b"),
}


def composed_value(cfg: DictConfig, key: str) -> Any:
    """The value at `key` in `cfg` as plain Python (None when absent); a `*` part maps over the node's
    children in order and yields a list."""
    head, star, tail = key.partition(".*.")
    if not star:
        value = OmegaConf.select(cfg, key, default=None)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    node = OmegaConf.select(cfg, head, default=None)
    children = [] if node is None else [child for child in node.values() if child is not None]
    return [composed_value(child, tail) for child in children]


def governed_by_axis(key: str, job: dict[str, str]) -> bool:
    """True when one of the sweep job's overrides (`job`: swept key -> value) chooses what lives at `key`
    and chose something other than the paper's LASeR: that job is one of the experiment's comparison
    rows (a baseline bandit, another context, a noisier pool), not the paper's run."""
    for swept, value in job.items():
        prefixes, paper_choice = AXES.get(swept, ((), None))
        if any(key == p or key.startswith(p + ".") for p in prefixes) and value != paper_choice:
            return True
    return False


def _plain(value: Any) -> str:
    """A value as a yaml reader would type it (null, true, lists without brackets)."""
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, bool) or value is None:
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def _experiments(names: tuple[str, ...]) -> str:
    groups = {PAPER_EXPERIMENTS: "all paper experiments", REASONING: "the reasoning experiments"}
    return groups.get(names, ", ".join(f"`{n}`" for n in names))


def deviations_markdown() -> str:
    """The README's "Deviations from the paper" table: one row per recorded deviation."""
    lines = ["| setting (`key`) | experiments | paper | source | laser | why | back to the paper |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        for d in s.deviations:
            lines.append(f"| {s.name} (`{s.key}`) | {_experiments(d.experiments)} | {_plain(s.paper)} "
                         f"| {s.source} | {_plain(d.value)} | {d.why} | `{d.restore}` |")
    return "\n".join(lines) + "\n"
