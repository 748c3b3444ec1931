"""A base model writes on after its answer: "Final answer: 5\\n\\nQuestion: ...\\nFinal answer: 7". Through the
real step (GSM8K's prompt, the real `Policy.sample`), the response ends at the stop string "Question:":
it is graded 5, and the RM, the pairs and the loss see only the text and tokens before the stop."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModelForCausalLM

import laser.step.losses as losses
import laser.step.module as step_module
from laser.rewards.verifier import VerifierRM
from laser.run import run
from laser.tasks.gsm8k import GSM8K

# sample 0 of every prompt answers 5 and then invents a question answered 7; sample 1 answers 6, then 5
SCRIPTS = ["Final answer: 5\n\nQuestion: What is 3 + 4?\nFinal answer: 7",
           "Final answer: 6\n\nQuestion: What is 1 + 4?\nFinal answer: 5"]
# what is left before "Question:" (with the blank line, unless a token straddling the stop carried it)
CUT = ["Final answer: 5", "Final answer: 6"]


def is_cut(text: str, row: int) -> bool:
    return text.rstrip() == CUT[row % 2] and SCRIPTS[row % 2].startswith(text)


def write_gsm8k(folder) -> None:
    rows = [{"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
            for a, b in ((2, 3), (1, 4), (0, 5), (4, 1))]
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def scripted_generate(seen: dict, halt: bool):
    """`generate` of a policy that writes SCRIPTS[row % 2] (greedy: SCRIPTS[0]); with `halt`, like transformers,
    it stops once a stop string is complete (the rest of the row is padding), else it writes the whole script."""
    def generate(self, input_ids, attention_mask, max_new_tokens, num_return_sequences=1, pad_token_id=0,
                 stop_strings=None, tokenizer=None, **kwargs):
        seen["stop_strings"].append(stop_strings)
        seen["tokenizer"] = tokenizer
        rows = input_ids.repeat_interleave(num_return_sequences, dim=0)
        continuations = []
        for row in range(rows.shape[0]):
            script = SCRIPTS[row % 2] if kwargs.get("do_sample") else SCRIPTS[0]
            tokens = tokenizer.encode(script, add_special_tokens=False)
            through = next(i for i in range(1, len(tokens) + 1)
                           if any(s in tokenizer.decode(tokens[:i]) for s in stop_strings))
            continuations.append(tokens[:through] if halt else tokens)
            seen["through"].append(tokens[:through])
        width = max(map(len, continuations))
        padded = [c + [pad_token_id] * (width - len(c)) for c in continuations]
        return torch.cat([rows, torch.tensor(padded, dtype=rows.dtype)], dim=1)

    return generate


@pytest.mark.parametrize("halt", [True, False], ids=["generation_stops", "generation_runs_on"])
def test_a_response_is_graded_scored_and_trained_on_up_to_the_stop_string(halt, make_config, tmp_path, monkeypatch):
    data = tmp_path / "gsm8k"
    write_gsm8k(data)
    seen: dict = {"stop_strings": [], "through": [], "rm": [], "evaluated": [], "trained": [], "nll_lengths": []}
    monkeypatch.setattr(PeftModelForCausalLM, "generate", scripted_generate(seen, halt))

    def rm_score(self, batch):  # 1 for a graded 5; it counts the policy tokens of what it reads as its input
        seen["rm"] += batch.responses
        self.tokens_processed += sum(len(seen["tokenizer"].encode(r, add_special_tokens=False)) for r in batch.responses)
        return torch.tensor([float(batch.task.extract_answer(r) == "5") for r in batch.responses])

    real_evaluate, real_update, real_nll = GSM8K.evaluate, step_module.update_on_pairs, losses.nll_loss
    monkeypatch.setattr(VerifierRM, "score", rm_score)
    monkeypatch.setattr(GSM8K, "evaluate", lambda self, responses, examples: (
        seen["evaluated"].extend(responses), real_evaluate(self, responses, examples))[1])
    monkeypatch.setattr(step_module, "update_on_pairs", lambda policy, prompt_ids, response_ids, pairs, *rest: (
        seen["trained"].append((response_ids, pairs)), real_update(policy, prompt_ids, response_ids, pairs, *rest))[1])
    monkeypatch.setattr(losses, "nll_loss", lambda logps, lengths: (
        seen["nll_lengths"].append(lengths.tolist()), real_nll(logps, lengths))[1])

    out = tmp_path / "run"
    results = run(make_config([
        "task=gsm8k", f"task.data_dir={data}", "policy.warm_start.steps=0", "rm_pool=oracle", "bandit=single",
        "bandit.arm=oracle", "laser.iterations=1", "data.steps_per_iteration=1", "data.batch_size=2",
        "laser.num_samples=2", "laser.pairs_per_prompt=1", "data.eval_limit=2", "laser.log_samples_every=0",
    ], output_dir=out, legacy=False), out)

    tokenizer = seen["tokenizer"]
    assert seen["stop_strings"] == [["Question:", "Your task is to answer the question below"]] * 3  # eval, step, eval
    # graded: the evaluation's (greedy: sample 0's) response is cut, and its answer is 5, not the invented 7
    assert len(seen["evaluated"]) == 4 and all(is_cut(text, 0) for text in seen["evaluated"])
    assert results["final"]["test/accuracy"] == 1.0  # every gold is 5 (uncut, the 7 would have been graded: 0)
    assert GSM8K(data_dir=str(data)).extract_answer(seen["evaluated"][0]) == "5"
    # scored: the RM read only the text before the stop
    assert len(seen["rm"]) == 4 and all(is_cut(text, row) for row, text in enumerate(seen["rm"]))
    # trained: the tokens before the stop, as sampled, then EOS; 5 chosen over 6 (the uncut text ranks them the
    # other way round); the NLL's length is the cut response's
    (response_ids, pairs), = seen["trained"]
    step_tokens = seen["through"][2:6]  # after the first evaluation's 2 rows
    for row, ids in enumerate(response_ids):
        assert ids[-1] == tokenizer.eos_token_id and ids[:-1] == step_tokens[row][: len(ids) - 1]
        assert tokenizer.decode(ids, skip_special_tokens=True) == seen["rm"][row]
    assert sorted(pairs) == [(0, 0, 1), (1, 0, 1)]
    assert seen["nll_lengths"] == [[len(response_ids[0]), len(response_ids[2])]]
    assert len(response_ids[0]) < len(tokenizer.encode(SCRIPTS[0], add_special_tokens=False))
    # the RM's input tokens are the cut responses' (4 scored); generation cost counts through the stop's last token
    assert results["generated_tokens"] == sum(map(len, step_tokens))
    assert results["rm_tokens"] == {"oracle": sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in seen["rm"])}
    assert results["rm_tokens"]["oracle"] < sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in SCRIPTS * 2)
