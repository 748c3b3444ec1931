"""Every conf/task yaml builds its task with the defaults the class has (prompts verbatim)."""

from __future__ import annotations

from conftest import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf

from laser.tasks.arithmetic import Arithmetic
from laser.tasks.gsm8k import GSM8K
from laser.tasks.mmlu import MMLU
from laser.tasks.strategyqa import StrategyQA


def test_task_yamls_instantiate() -> None:
    arithmetic = instantiate(OmegaConf.load(REPO / "conf" / "task" / "arithmetic.yaml"))
    assert isinstance(arithmetic, Arithmetic) and arithmetic.categories == ("comparison", "maximum", "minimum")
    gsm8k = instantiate(OmegaConf.load(REPO / "conf" / "task" / "gsm8k.yaml"))
    assert isinstance(gsm8k, GSM8K) and gsm8k.data_dir is None
    assert dict(OmegaConf.load(REPO / "conf" / "task" / "gsm8k.yaml").prompt_templates) == GSM8K.prompt_templates
    assert gsm8k.answer_format == "final_answer"  # the yaml shows the defaults, verbatim


CONF_TASK = REPO / "conf" / "task"


def test_task_yamls_instantiate_with_the_default_prompts() -> None:
    for cls in (StrategyQA, MMLU):
        task = instantiate(OmegaConf.load(CONF_TASK / f"{cls.name}.yaml"))
        yaml_templates = dict(OmegaConf.load(CONF_TASK / f"{cls.name}.yaml").prompt_templates)
        assert isinstance(task, cls) and task.data_dir is None and yaml_templates == cls.prompt_templates


def test_task_yamls_compose() -> None:
    for name in ("hotpotqa", "longbench"):
        node = OmegaConf.load(REPO / "conf" / "task" / f"{name}.yaml")
        assert node._target_ == "laser.tasks.longcontext.LongContextQA" and node.source == name
