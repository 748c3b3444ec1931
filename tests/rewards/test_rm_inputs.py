"""What HF RMs read: the raw question in the RM's own chat template (not the policy's prompt format), a
prompt cut in the middle so the response survives `max_length`, and each row scored at its last token
when the RM's pad token is its eos. A tiny classifier and a tiny causal LM share a byte-level tokenizer
without a pad token and with a chat template unlike any task prompt; the tasks are AlpacaEval (instruction
following) and GSM8K, read from small files in their formats."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from laser.rewards.base import ScoringBatch
from laser.rewards.classifier import ClassifierRM
from laser.rewards.likelihood import LikelihoodRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.rm_inputs import common_prefix_length, fit_to_length, free_pad_id, pad_right
from laser.selection.single import SingleRM
from laser.step.decisions import decide
from laser.step.scoring import score_decisions
from laser.tasks.gsm8k import GSM8K
from laser.tasks.instructions import Instructions

# Nothing like "### Instruction:" or the authors' "Question: ... Solution: ": a policy format leaking in shows.
RM_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<<{{ m['role'] }}>>\n{{ m['content'] }}{{ eos_token }}"
               "{% endfor %}{% if add_generation_prompt %}<<assistant>>\n{% endif %}")
SCAFFOLDING = ("### Instruction", "### Response", "Your task is to answer", "Question:", "Solution:")
RESPONSES = ["Sure: the answer is 42.", "I think 7 * 6 = 42.\nFinal answer: 42"]


def rm_text(question: str, response: str) -> str:
    """RM_TEMPLATE(user=question, assistant=response), written out by hand."""
    return f"<s><<user>>\n{question}</s><<assistant>>\n{response}</s>"


@pytest.fixture(scope="module")
def rm_folders(tmp_path_factory) -> dict[str, Path]:
    """A byte-level BPE tokenizer with no pad token and RM_TEMPLATE, and a tiny Llama classifier and
    causal LM on it whose config has no pad id (loading sets pad = eos, as for many hub RMs)."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

    from laser.tiny import build_tokenizer, tiny_llama_config

    bpe = build_tokenizer(["<<user>> <<assistant>> the answer is 42. Final answer: 7 * 6 = 42"], vocab_size=320)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe.backend_tokenizer, bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = RM_TEMPLATE
    config = tiny_llama_config(len(tokenizer), 32, 2, 4, num_labels=1, initializer_range=0.5)
    config.pad_token_id = None
    folders = {}
    for name, cls in (("classifier", LlamaForSequenceClassification), ("causal", LlamaForCausalLM)):
        torch.manual_seed(0)
        folders[name] = tmp_path_factory.mktemp(name)
        cls(config).save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
    return folders


class RecordingTokenizer:
    """The RM's tokenizer, remembering every text it is asked to tokenise."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.texts = tokenizer, []

    def __call__(self, text, **kwargs):
        self.texts.append(text)
        return self.tokenizer(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


QUESTIONS = [
    "A baker makes 12 loaves an hour for 5 hours and sells all but 7 of them. How many loaves does the baker sell?",
    "Tom has 3 boxes of 24 pens and gives away a third of the pens. How many pens does Tom keep?",
    "A train travels 60 miles an hour for 2 hours, then 40 miles an hour for 3 hours. How far does it go?",
    "Write a short poem about the sea.",
]


@pytest.fixture(scope="module")
def task_files(tmp_path_factory) -> Path:
    """GSM8K's train/test JSON lines and an AlpacaEval outputs list, in their formats."""
    folder = tmp_path_factory.mktemp("data")
    rows = [{"question": q, "answer": "Some steps.\n#### 42"} for q in QUESTIONS]
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = [{"instruction": q, "output": "A reference.", "generator": "gpt4", "dataset": "koala"} for q in QUESTIONS]
    (folder / "alpaca.json").write_text(json.dumps(outputs))
    return folder


def load_task(name: str, folder: Path):
    if name == "alpaca_eval":
        return Instructions("alpaca_eval", data_file=str(folder / "alpaca.json"), test_fraction=0.25)
    return GSM8K(data_dir=str(folder), train_limit=3)


def step_scores(rm, task) -> tuple[list, torch.Tensor]:
    """Score RESPONSES for 3 training examples as the LASeR step does (`score_decisions`: the policy's
    prompts, the task, one RM chosen)."""
    examples = task.train_examples()
    prompts = [task.format_prompt(e) for e in examples]
    responses = [r for _ in examples for r in RESPONSES]
    selector = SingleRM(1)
    decisions = decide(selector, torch.ones(len(examples), 4))
    scores, _ = score_decisions(RewardModelPool({"rm": rm}), selector, decisions, examples, prompts, responses,
                                len(RESPONSES), task)
    return examples, scores


@pytest.mark.parametrize("task_name", ["alpaca_eval", "gsm8k"])
@pytest.mark.parametrize("cls", [ClassifierRM, LikelihoodRM])
def test_a_chat_rm_reads_the_raw_question_in_its_own_template(rm_folders, task_files, task_name, cls):
    task = load_task(task_name, task_files)
    rm = cls(str(rm_folders["classifier" if cls is ClassifierRM else "causal"]), batch_size=4, max_length=4096)
    rm.load()
    rm.tokenizer = RecordingTokenizer(rm.tokenizer)
    examples, scores = step_scores(rm, task)
    assert scores.shape == (3, len(RESPONSES)) and torch.isfinite(scores).all()
    assert any(s in task.format_prompt(examples[0]) for s in SCAFFOLDING)  # the policy's prompt has it ...
    read = "".join(rm.tokenizer.texts)
    assert not any(s in read for s in SCAFFOLDING)  # ... the RM never reads it
    for example in examples:
        assert task.rm_prompt(example) == example.question
        for response in RESPONSES:
            whole = rm_text(example.question, response)
            # The classifier tokenises the whole conversation; the likelihood RM its two turns apart.
            assert whole in rm.tokenizer.texts or whole.replace(response, "") + response in read


@pytest.mark.parametrize("cls", [ClassifierRM, LikelihoodRM])
def test_truncation_cuts_the_middle_of_the_prompt_never_the_response(rm_folders, task_files, cls):
    task = load_task("gsm8k", task_files)
    folder = str(rm_folders["classifier" if cls is ClassifierRM else "causal"])
    full, short = cls(folder, max_length=4096), cls(folder, max_length=40)
    examples = task.train_examples()
    batch = ScoringBatch([task.format_prompt(e) for e in examples], [RESPONSES[1]] * 3, examples, task)
    full.load()
    short.load()
    for (ids, n_prompt), (cut, n_cut) in zip(full.prepare(batch), short.prepare(batch), strict=True):
        assert len(ids) > 40 and len(cut) == 40 and cut[n_cut:] == ids[n_prompt:]  # the response, whole
        room = 40 - (len(ids) - n_prompt)
        assert cut[:n_cut] == ids[: room - room // 2] + ids[n_prompt - room // 2 : n_prompt]
        assert cut[0] == full.tokenizer.bos_token_id  # the chat header stays; so does "<<assistant>>\n"
    assert short.responses_cut == 0
    # The scores are those of the cut sequences read alone.
    alone = [short.score_chunk([pair]) for pair in short.prepare(batch)]
    torch.testing.assert_close(short.score(batch), torch.cat(alone), atol=1e-5, rtol=0)


def test_a_response_longer_than_max_length_keeps_its_start_and_is_counted(rm_folders, task_files, caplog):
    rm = ClassifierRM(str(rm_folders["classifier"]), max_length=6)
    examples = load_task("gsm8k", task_files).train_examples()[:2]
    batch = ScoringBatch(["p", "p"], [RESPONSES[1]] * 2, examples)
    rm.load()
    with caplog.at_level(logging.WARNING, logger="laser.rewards.hf_base"):
        prepared = rm.prepare(batch)
    ids, n_prompt = rm.encode(examples[0].question, RESPONSES[1])
    assert prepared == [(ids[n_prompt : n_prompt + 6], 0)] * 2
    assert rm.responses_cut == 2 and sum("max_length=6" in r.message for r in caplog.records) == 1


def test_a_row_ending_in_eos_is_scored_at_its_last_token(rm_folders, task_files):
    rm = ClassifierRM(str(rm_folders["classifier"]), batch_size=8)
    rm.load()
    eos = rm.tokenizer.eos_token_id
    assert rm.tokenizer.pad_token_id == eos == rm.model.config.pad_token_id  # the pad = eos fallback
    examples = load_task("gsm8k", task_files).train_examples()[:2]
    # Row 0 is short and ends in eos (the template closes the assistant turn); row 1 pads it.
    batch = ScoringBatch(["", ""], ["42", RESPONSES[1] * 3], [examples[0], examples[1]])
    scores = rm.score(batch)
    short = torch.tensor([rm.encode(examples[0].question, "42")[0]])
    assert short[0, -1].item() == eos
    rm.model.config.pad_token_id = None  # one unpadded row: HF reads its last position
    with torch.no_grad():
        alone = rm.model(input_ids=short).logits[0, 0].item()
        before_eos = rm.model(input_ids=short[:, :-1]).logits[0, 0].item()
    assert scores[0].item() == pytest.approx(alone, abs=1e-5)
    assert abs(alone - before_eos) > 1e-3  # reading the token before eos would have shown


def test_fit_to_length_keeps_the_response_and_the_ends_of_the_prompt():
    prompt, response = list(range(10)), [100, 101, 102]
    assert fit_to_length(prompt + response, 10, 20) == (prompt + response, 10, False)
    assert fit_to_length(prompt + response, 10, 7) == ([0, 1, 8, 9, 100, 101, 102], 4, False)
    assert fit_to_length(prompt + response, 10, 6) == ([0, 1, 9, 100, 101, 102], 3, False)  # odd room: head +1
    assert fit_to_length(prompt + response, 10, 4) == ([0, 100, 101, 102], 1, False)
    assert fit_to_length(prompt + response, 10, 3) == (response, 0, False)
    assert fit_to_length(prompt + response, 10, 2) == ([100, 101], 0, True)  # only now is the response cut


def test_free_pad_id_avoids_every_id_in_the_batch():
    assert free_pad_id([[5, 2], [2, 7]], preferred=0, vocab_size=10) == 0
    assert free_pad_id([[5, 2], [2, 0]], preferred=2, vocab_size=10) == 1  # eos = pad in a row: not it
    assert free_pad_id([[1, 2]], preferred=None, vocab_size=10) == 0
    with pytest.raises(ValueError, match="all 3 ids"):
        free_pad_id([[0, 1, 2]], preferred=2, vocab_size=3)
    input_ids, attention = pad_right([[3, 4, 5], [6]], pad_id=9)
    assert input_ids.tolist() == [[3, 4, 5], [6, 9, 9]] and attention.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert (attention.sum(-1) - 1).tolist() == [2, 0]
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2 and common_prefix_length([1, 2], [1, 2, 3]) == 2
