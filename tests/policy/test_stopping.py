"""Where a response ends (laser/policy/stopping.py): at EOS, at the first stop string (cut on the policy's
own tokens, the stop excluded, EOS appended), or at the length limit; and Hugging Face generation that
stops there."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from laser.errors import LaserConfigError
from laser.policy.policy import Policy
from laser.policy.stopping import end_response, first_stop
from laser.tasks.arithmetic import Arithmetic
from laser.tasks.base import choose_stop_strings
from laser.tiny import build_tiny_causal_lm, build_tokenizer

EOS = 0


class TableTokenizer:
    """Token i decodes to VOCAB[i] (EOS is special: skipped); text encodes one character per token
    (ids 1000 + ord(c)), so a re-encoded piece is recognisable."""

    VOCAB = {EOS: "</s>", 1: "Final answer:", 2: " 5", 3: "\n\n", 4: "Question", 5: ":", 6: " what",
             7: "5\n\nQues", 8: "tion:", 9: " Question", 10: "Your task", 11: " 7", 12: "\n"}
    eos_token_id: int | None = EOS

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i - 1000) if i >= 1000 else self.VOCAB[i] for i in ids
                       if not (skip_special_tokens and i == EOS))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [1000 + ord(c) for c in text]


def test_the_cut_keeps_the_tokens_before_the_stop_and_appends_eos():
    # "Final answer: 5\n\nQuestion: what" + more: the stop ends with token 5 (the 5th generated token)
    ending = end_response([1, 2, 3, 4, 5, 6, 1, 11], TableTokenizer(), ("Question:",))
    assert ending.tokens == [1, 2, 3, EOS] and ending.reason == "stop" and ending.generated == 5
    assert TableTokenizer().decode(ending.tokens) == "Final answer: 5\n\n"


def test_a_token_straddling_the_stop_keeps_its_answer_text_re_encoded():
    """Token 7 is "5\\n\\nQues": its part before the stop ("5\\n\\n") is answer text, re-encoded and kept."""
    ending = end_response([1, 7, 8, 6], TableTokenizer(), ("Question:",))
    assert ending.tokens == [1, *TableTokenizer().encode("5\n\n"), EOS] and ending.generated == 3
    assert TableTokenizer().decode(ending.tokens) == "Final answer:5\n\n"


def test_a_token_straddling_the_stop_with_only_whitespace_before_it_is_dropped():
    ending = end_response([1, 2, 9, 5, 6], TableTokenizer(), ("Question:",))  # " Question" + ":"
    assert ending.tokens == [1, 2, EOS] and ending.generated == 4


def test_a_re_encoding_that_does_not_decode_back_is_not_kept():
    class Lossy(TableTokenizer):
        def encode(self, text, add_special_tokens=False):
            return [1000 + ord("x")]

    ending = end_response([1, 7, 8], Lossy(), ("Question:",))
    assert ending.tokens == [1, EOS]


def test_the_earliest_stop_in_the_text_wins_whatever_the_order_of_the_list():
    tokens = [1, 2, 3, 10, 3, 4, 5]  # "Your task" comes before "Question:"
    for stops in (("Question:", "Your task"), ("Your task", "Question:")):
        ending = end_response(tokens, TableTokenizer(), stops)
        assert ending.tokens == [1, 2, 3, EOS] and ending.generated == 4


def test_eos_before_a_stop_ends_the_response_there():
    ending = end_response([1, 2, EOS, 3, 4, 5], TableTokenizer(), ("Question:",))
    assert ending == end_response([1, 2, EOS, 3], TableTokenizer(), ())
    assert ending.tokens == [1, 2, EOS] and ending.reason == "eos" and ending.generated == 3


def test_without_eos_or_stop_the_response_ran_into_the_length_limit():
    ending = end_response([1, 2, 3, 4], TableTokenizer(), ("Question:",))  # "Question" without ":"
    assert ending.tokens == [1, 2, 3, 4] and ending.reason == "length" and ending.generated == 4


def test_a_stop_at_the_very_start_leaves_an_empty_response():
    ending = end_response([4, 5, 6], TableTokenizer(), ("Question:",))
    assert ending.tokens == [EOS] and ending.reason == "stop" and ending.generated == 2


def test_a_tokenizer_without_eos_gets_no_eos_appended():
    tokenizer = TableTokenizer()
    tokenizer.eos_token_id = None
    assert end_response([1, 2, 3, 4, 5], tokenizer, ("Question:",)).tokens == [1, 2, 3]


def test_first_stop_is_the_position_of_the_earliest_stop():
    assert first_stop("a Question: b Your task", ("Your task", "Question:")) == 2
    assert first_stop("nothing here", ("Question:",)) is None


def test_task_stop_strings_null_keeps_the_default_empty_means_none_and_bad_values_are_one_line():
    assert choose_stop_strings(None, ("Question:",)) == ("Question:",)
    assert choose_stop_strings([], ("Question:",)) == ()
    assert choose_stop_strings(["\n\n###"], ()) == ("\n\n###",)
    for bad in ("Question:", [""], [3]):
        with pytest.raises(LaserConfigError, match="task.stop_strings=.*null .*\\[\\] .*non-empty strings"):
            choose_stop_strings(bad, ())


# ---- a real byte-level BPE tokenizer ---------------------------------------------------------------------

TEXTS = ["Your task is to answer the question below.\nQuestion: What is 3 + 4?\nSolution: 3 + 4 = 7.\n"
         "Final answer: 7\n\nQuestion: Is 9 odd?\nSolution: yes. Final answer: yes"] * 20
STOP = "Question:"


@pytest.fixture(scope="module")
def bpe():
    return build_tokenizer(TEXTS, vocab_size=400)


@given(before=st.text(alphabet="Finalswer: 0123456789.\n Qut", max_size=40),
       after=st.text(alphabet="Question: 0123456789\n", max_size=20))
def test_on_a_real_tokenizer_the_cut_is_the_text_before_the_stop_on_the_policys_own_tokens(bpe, before, after):
    assume(STOP not in before)  # the stop's first occurrence is the one inserted (it has no border)
    tokens = bpe.encode(before + STOP + after, add_special_tokens=False)
    ending = end_response(tokens, bpe, (STOP,))
    text = bpe.decode(ending.tokens, skip_special_tokens=True)
    assert ending.reason == "stop" and ending.tokens[-1] == bpe.eos_token_id
    # the text before the stop, less at most the whitespace a token straddling the stop carried
    assert before.startswith(text) and before[len(text):].strip() == ""
    # every sampled token that lies wholly before the stop is kept as it was sampled
    same = next((i for i, (a, b) in enumerate(zip(ending.tokens, tokens, strict=False)) if a != b), len(tokens))
    assert not before.startswith(bpe.decode(tokens[: same + 1]))
    # the generation cost counts the sampled tokens through the stop's last one
    assert STOP in bpe.decode(tokens[: ending.generated]) and STOP not in bpe.decode(tokens[: ending.generated - 1])


# ---- Policy: generation stops at the stop string, and the response is cut there --------------------------


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    task = Arithmetic(num_train=50, num_test=10)
    path = build_tiny_causal_lm(str(tmp_path_factory.mktemp("models")), task=task, hidden_size=32, num_layers=1,
                                num_heads=4)
    torch.manual_seed(0)
    return Policy(path, lora={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
                  max_new_tokens=24)


def a_stop_inside(prompt: str, text: str) -> str:
    """Three printable characters from the middle of `text` whose first occurrence in prompt + text is there
    (Hugging Face matches stop strings across the prompt's end too)."""
    for start in range(3, len(text) - 3):
        stop = text[start:start + 3]
        if stop.isascii() and stop.isprintable() and stop.strip() and (prompt + text).find(stop) == len(prompt) + start:
            return stop
    raise AssertionError(f"no stop string to take from {text!r}")


def test_hf_generation_stops_at_the_stop_string_and_the_response_is_cut_before_it(policy, monkeypatch):
    """The untrained tiny model's sampled text (seeded); three characters from its middle become the stop."""
    prompt = "Q: Is 7 larger than 3?\nA:"
    enc = policy.encode([prompt])
    torch.manual_seed(3)
    free = policy.sample(enc, 1)
    tokens, stop = free.response_ids[0], a_stop_inside(prompt, free.texts[0])
    lengths = []
    real_generate = policy.model.generate

    def spy(**kwargs):
        out = real_generate(**kwargs)
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(policy.model, "generate", spy)
    torch.manual_seed(3)  # the same draws: the stop changes where generation ends, not what is drawn
    stopped = policy.sample(enc, 1, stop_strings=[stop])
    expected = end_response(tokens, policy.tokenizer, [stop])
    assert stopped.response_ids == [expected.tokens] and stopped.num_stopped == 1 and stopped.num_truncated == 0
    assert lengths == [expected.generated] == [stopped.num_generated_tokens] < [len(tokens)]  # generate stopped
    text = policy.tokenizer.decode(expected.tokens, skip_special_tokens=True)
    assert stopped.texts == [text] and stop not in text and free.texts[0].startswith(text)


def test_samples_count_responses_stopped_truncated_and_ended(policy):
    """Through the real `_finish`: one response per ending, counted apart."""
    tok = policy.tokenizer
    eos = tok.eos_token_id
    answer, rest = tok.encode(" 5", add_special_tokens=False), tok.encode("\nQ: 9", add_special_tokens=False)
    samples = policy._finish([answer + rest, answer + [eos], answer], stop_strings=("\nQ:",))
    assert samples.response_ids == [answer + [eos], answer + [eos], answer]
    assert samples.texts == [" 5", " 5", " 5"]
    assert (samples.num_stopped, samples.num_truncated) == (1, 1)
    through = end_response(answer + rest, tok, ("\nQ:",)).generated
    assert samples.num_generated_tokens == through + len(answer) + 1 + len(answer)
