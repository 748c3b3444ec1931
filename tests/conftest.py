"""Shared by every test: the one way to compose the real Hydra config, a shrunk default run, and the
paths, model cache and tiny models the tests build.

Test folders mirror `laser/`'s packages (tests/step/ for laser/step/, ...); tests/end_to_end/ runs
whole jobs and the command lines. Helpers are imported as `from conftest import ...` (pytest puts
this folder on sys.path), so test file names are unique across folders.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hypothesis import settings
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")
DATA_DIR = REPO.parent / "shared" / "data"

# Property tests check behaviour, not speed: on a loaded 2-core machine an example can take longer than
# hypothesis's default 200 ms deadline, which would fail a correct test.
settings.register_profile("laser", deadline=None)
settings.load_profile("laser")

# Tiny models on 2 busy cores run far faster single-threaded (thread hand-offs dominate).
torch.set_num_threads(1)

# Fewer iterations, steps, samples and evaluated examples: a few seconds per run, whatever the config. The
# `debug` group (conf/debug/tiny.yaml, `python -m laser.run +debug=tiny` for users) is the one definition;
# it goes LAST among a test's overrides, after any `+experiment=`, whose settings it must beat.
SHRINK = ["+debug=tiny"]
# The first embedded miniature (addition and comparison, the tiny pool, the paper's LinUCB on the last-token
# context, a fixed 200-step warm start), which the unit tests were written against: its experiment file.
# Tests of the fair miniature (the embedded default) or of another experiment use SHRINK alone.
LEGACY = ["+experiment=legacy_miniature"]
TINY_OVERRIDES = LEGACY + SHRINK


def compose_config(overrides: Sequence[str] = (), config_name: str = "config", output_dir: Path | None = None,
                   cache_dir: Path | None = None, hydra: bool = False) -> DictConfig:
    """The real config, as `python -m laser.run` (config_name="config") or `python -m laser.bestofn`
    ("bestofn") composes it from conf/ with `overrides`.

    With `output_dir`, the job is set up as Hydra runs it: HydraConfig is set (so `${hydra:...}`
    interpolations resolve), the job writes into `output_dir` and caches models in `cache_dir`, and
    the `hydra` node is dropped. Without it, `hydra=True` keeps the `hydra` node (launchers, sweeps)."""
    cfg = copy.deepcopy(_composed(tuple(overrides), config_name, hydra or output_dir is not None))
    if output_dir is None:
        return cfg
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        if cache_dir is not None:
            cfg.paths.cache_dir = str(cache_dir)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@functools.cache
def _composed(overrides: tuple[str, ...], config_name: str, with_hydra: bool) -> DictConfig:
    """Hydra's composition, once per session for each set of overrides (conf/ does not change while the tests
    run): ~0.13 s each, ~10x its deep copy, and the suite composes the same configs hundreds of times."""
    import laser.runs.folder  # noqa: F401 (registers the run-folder resolvers conf/hydra names)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=with_hydra)


# A policy warm-started briefly, for tests that run a config to see it run (not what the policy learns):
# the tiny policy's default warm start trains to 0.6 accuracy per category (~10 s of CPU for each task and
# category mix), and 32 long targets per step (GSM8K's reasoning, AlpacaEval's references) cost ~0.7 s a step.
BRIEF_WARM_START = ["policy.warm_start.steps=5", "policy.warm_start.target_accuracy=null",
                    "policy.warm_start.batch_size=2"]
BRIEF_RM_TRAINING = 5  # a pool that trains its RMs (a `train_steps` knob) trains them this briefly in tests
BRIEF_QUESTIONS = 20   # and one trained on the policy's samples (a `question_limit` knob) samples this many


def briefly(cfg: DictConfig) -> DictConfig:
    """The RM pool's own training (if it has any) cut to BRIEF_RM_TRAINING steps: tests of building,
    scoring and running do not need well-trained RMs (how well they rank is their own test's business)."""
    if "train_steps" in cfg.rm_pool:
        with open_dict(cfg):
            cfg.rm_pool.train_steps = BRIEF_RM_TRAINING
    if "question_limit" in cfg.rm_pool:  # a pool trained on the policy's samples samples a few questions
        with open_dict(cfg):
            cfg.rm_pool.question_limit = BRIEF_QUESTIONS
    return cfg


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One model cache per test session: the tiny model and its warm start are built once."""
    return tmp_path_factory.mktemp("laser-cache")


@pytest.fixture
def make_config(tmp_path, cache_dir):
    """`make_config(overrides, output_dir=None, tiny=True, legacy=True)`: a job's config (`compose_config`)
    writing into `output_dir` (default tmp_path/run), shrunk (SHRINK) unless tiny=False, on the first
    miniature (LEGACY) unless legacy=False."""
    def make(overrides: Sequence[str] = (), output_dir: Path | None = None, tiny: bool = True,
             config_name: str = "config", legacy: bool = True) -> DictConfig:
        out = output_dir or tmp_path / "run"
        legacy_first = LEGACY if tiny and legacy else []
        return compose_config(legacy_first + list(overrides) + (SHRINK if tiny else []), config_name, out, cache_dir)

    return make


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, offline: a hub id resolves only if it is in this cache."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))
    return cache


def require_data(name: str) -> Path:
    """The benchmark data folder ../shared/data/<name>, or skip the test."""
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path} (see ../shared/data/README.md)")
    return path


def word_level_llamas(tmp_path_factory, words: str, models: dict[str, tuple[str, int]],
                      **config_overrides) -> dict[str, Path]:
    """A word-level tokenizer over `words` (no pad token, BOS prepended) and tiny random Llamas
    (name -> ("causal" | "classifier", seed)), each saved like a hub checkpoint. A large init range
    makes outputs differ between tokens, so a padding bug would show. `config_overrides` replace
    LlamaConfig fields (e.g. hidden_size)."""
    from tokenizers import Tokenizer, pre_tokenizers, processors, trainers
    from tokenizers import models as tokenizer_models
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(tokenizer_models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([words], trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fields = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, initializer_range=0.5,
                  num_labels=1)
    config = LlamaConfig(**{**fields, **config_overrides})
    classes = {"causal": LlamaForCausalLM, "classifier": LlamaForSequenceClassification}
    paths = {}
    for name, (kind, seed) in models.items():
        torch.manual_seed(seed)
        paths[name] = tmp_path_factory.mktemp(name)
        classes[kind](config).save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def run_analysis_notebook(sweep_dir: Path, monkeypatch):
    """notebooks/analysis.ipynb executed on `sweep_dir` (skips without the dev extra or a python3 kernel);
    the committed notebook has no outputs. Returns the executed notebook."""
    import os

    nbformat = pytest.importorskip("nbformat", reason="notebook tests need the dev extra (nbformat)")
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need the dev extra (nbclient)")
    pytest.importorskip("ipykernel", reason="notebook tests need the dev extra (ipykernel)")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel as error:
        pytest.skip(f"no python3 Jupyter kernel here: {error}")
    # The kernel inherits this environment: the sweep to read, and the repository on its path.
    monkeypatch.setenv("LASER_SWEEP_DIR", str(sweep_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(REPO / "notebooks" / "analysis.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")  # committed cleared
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    return notebook
