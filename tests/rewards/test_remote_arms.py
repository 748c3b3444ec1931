"""The remote arms against fake servers that speak the upstream JSON (`fake_servers.py`): what laser sends
(fields, the RM's chat template applied once, no double BOS), what it reads, and how each kind of broken
server becomes one counted fault line. Plus laser's own server standing in for vLLM: a `VLLMClassifyRM`
pointed at it scores exactly as the same classifier does in process."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import pytest
import torch
from fake_servers import FakeOpenAIChat, FakeOpenRLHF, FakeVLLM, sigmoid

from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.classifier import ClassifierRM
from laser.rewards.errors import RewardModelError
from laser.rewards.http_client import RemoteRMError, error_message
from laser.rewards.openai_judge import OpenAIJudgeRM
from laser.rewards.openrlhf import OpenRLHFRewardRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.server import RewardServer
from laser.rewards.vllm_classify import VLLMClassifyRM
from laser.tasks.base import Example

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<<{{ m['role'] }}>>\n{{ m['content'] }}{{ eos_token }}"
            "{% endfor %}{% if add_generation_prompt %}<<assistant>>\n{% endif %}")
FAST = {"retries": 0, "backoff_s": 0.0, "timeout_s": 5}


@pytest.fixture(scope="module")
def chat_rm(tmp_path_factory) -> Path:
    """A tiny Llama classifier whose tokenizer, as Llama's, adds BOS when asked for special tokens, and
    whose chat template writes BOS itself (as most chat RMs' do)."""
    from tokenizers import processors
    from transformers import LlamaForSequenceClassification, PreTrainedTokenizerFast

    from laser.tiny import build_tokenizer, tiny_llama_config

    bpe = build_tokenizer(["<<user>> <<assistant>> Q: what is 2 + 3? A: 5 the answer is"], vocab_size=300)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe.backend_tokenizer, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    tokenizer.chat_template = TEMPLATE
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.bos_token_id)])
    folder = tmp_path_factory.mktemp("chat-rm")
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), 32, 1, 4, num_labels=1,
                                                             initializer_range=0.5))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def servers():
    """`servers(fake)` registers a fake server for shutdown at the end of the test."""
    started = []
    yield lambda server: started.append(server) or server
    for server in started:
        server.shutdown()


def batch(n: int = 3) -> ScoringBatch:
    """The policy's prompts ("Q: ...\\nA:") around raw questions, responses of different lengths."""
    examples = [Example(str(i), f"what is {i} + 3?", str(i + 3)) for i in range(n)]
    return ScoringBatch([f"Q: {e.question}\nA:" for e in examples], [" " + "5" * (i + 1) for i in range(n)], examples)


def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def length_score(item) -> float:
    return float(len(item)) / 10


# ----- vLLM /classify ------------------------------------------------------------------------------------------

def test_vllm_classify_sends_the_chat_template_once_without_added_bos_and_reads_raw_logits(chat_rm, servers):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_rm)
    fake = servers(FakeVLLM("rm", length_score, tokenizer=tokenizer))
    rm = VLLMClassifyRM(fake.url, "rm", tokenizer_name_or_path=str(chat_rm), batch_size=2, **FAST)
    scores = rm.score(batch(3))
    bodies = sorted(fake.posts("/classify"), key=lambda body: body["input"][0])  # they arrive in any order
    assert len(bodies) == 2 and [len(b["input"]) for b in bodies] == [2, 1]  # batch_size responses per request
    assert all(set(b) == {"model", "input", "use_activation", "add_special_tokens"} for b in bodies)
    assert all(b["model"] == "rm" and b["use_activation"] is False and b["add_special_tokens"] is False
               for b in bodies)
    texts = [t for b in bodies for t in b["input"]]
    assert texts[0] == "<s><<user>>\nwhat is 0 + 3?</s><<assistant>>\n 5</s>"  # the raw question, in the template
    assert all(t.count("<s>") == 1 and t.count("<<user>>") == 1 and "Q:" not in t for t in texts)
    assert fake.double_bos == 0
    expected = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) / 10 for t in texts]
    torch.testing.assert_close(scores, torch.tensor(expected))  # raw, not sigmoid(raw)
    assert rm.tokens_processed == sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def test_the_fake_vllm_catches_the_mistakes_it_exists_for(chat_rm, servers):
    """Dropping use_activation or add_special_tokens: false changes what vLLM computes; the fake shows both."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_rm)
    fake = servers(FakeVLLM("rm", length_score, tokenizer=tokenizer))
    rm = VLLMClassifyRM(fake.url, "rm", tokenizer_name_or_path=str(chat_rm), **FAST)
    text = rm.formatted_inputs(batch(1))[0][0]
    answer = rm.endpoint.post("/classify", {"model": "rm", "input": [text]})  # vLLM's defaults
    assert fake.double_bos == 1  # add_special_tokens defaults to true for "input": BOS twice
    raw = len(tokenizer(text)["input_ids"]) / 10
    assert answer["data"][0]["probs"] == [pytest.approx(sigmoid(raw))]  # the default activation squashes
    with pytest.raises(RemoteRMError, match=r"HTTP 400: Unknown fields \['use_activations'\]"):
        rm.endpoint.post("/classify", {"model": "rm", "input": [text], "use_activations": False})


def test_without_a_local_tokenizer_each_response_goes_in_vllms_chat_form(servers):
    fake = servers(FakeVLLM("rm", length_score))
    fake.delay_s = 0.05
    rm = VLLMClassifyRM(fake.url, "rm", max_in_flight=3, **FAST)
    scores = rm.score(batch(6))
    bodies = fake.posts("/classify")
    assert len(bodies) == 6 and 1 < fake.max_in_flight <= 3  # one request per response, 3 at most at once
    assert {"model": "rm", "messages": [{"role": "user", "content": "what is 0 + 3?"},
                                        {"role": "assistant", "content": " 5"}],
            "use_activation": False, "add_special_tokens": False} in bodies  # requests arrive in any order
    torch.testing.assert_close(scores, torch.tensor([length_score(f"what is {i} + 3?\n " + "5" * (i + 1))
                                                     for i in range(6)]))


def test_pooling_route_reads_a_reward_head_and_its_last_token_row(servers):
    for per_token in (False, True):
        fake = servers(FakeVLLM("prm", length_score, per_token=per_token))
        rm = VLLMClassifyRM(fake.url, "prm", route="pooling", pooling_task="embed", **FAST)
        scores = rm.score(batch(2))
        assert fake.posts("/pooling")[0]["task"] == "embed"
        torch.testing.assert_close(scores, torch.tensor([length_score(f"what is {i} + 3?\n " + "5" * (i + 1))
                                                         for i in range(2)]))


@pytest.mark.parametrize("input_format", ["text", "token_ids"])
def test_laser_server_and_vllm_client_score_as_the_in_process_classifier(chat_rm, input_format):
    local = ClassifierRM(str(chat_rm), max_length=24)  # short: the longer prompts lose their middle
    server = RewardServer(RewardModelPool({"skywork": ClassifierRM(str(chat_rm), max_length=64)}), port=0).start()
    try:
        rm = VLLMClassifyRM(server.url, "skywork", tokenizer_name_or_path=str(chat_rm), max_length=24,
                            input_format=input_format, batch_size=2, **FAST)
        examples = [Example(str(i), f"what is {i} + 3? " * (1 + 3 * i), str(i + 3)) for i in range(3)]
        scoring = ScoringBatch([f"Q: {e.question}\nA:" for e in examples], [" 5", " 17", " 3"], examples)
        remote, in_process = rm.score(scoring), local.score(scoring)
        if input_format == "token_ids":
            torch.testing.assert_close(remote, in_process, rtol=0, atol=1e-5)
        else:  # uncut texts are exact; a cut one is decoded and re-tokenised by the server
            torch.testing.assert_close(remote[0], in_process[0], rtol=0, atol=1e-5)
        assert rm.preflight() is None
        assert "skywork" in VLLMClassifyRM(server.url, "nope", **FAST).preflight() and \
            "does not serve model 'nope'" in VLLMClassifyRM(server.url, "nope", **FAST).preflight()
    finally:
        server.shutdown()


# ----- faults: one line naming the server, counted by the pool -------------------------------------------------

@pytest.mark.parametrize("style", ["nested", "flat"])
def test_error_bodies_of_both_vllm_shapes_become_one_line_naming_server_status_and_message(servers, style):
    fake = servers(FakeVLLM("rm", length_score, error_style=style))
    rm = VLLMClassifyRM(fake.url, "other", retries=2, backoff_s=0.0, timeout_s=5)
    with pytest.raises(RemoteRMError) as caught:
        rm.score(batch(1))
    message = str(caught.value)
    assert message == f"POST {fake.url}/classify failed after 1 attempt(s): HTTP 404: The model `other` does not exist."
    fake.faults = [(500, fake.error(500, "CUDA out of memory\nTraceback ...", "InternalServerError"))] * 3
    pool = RewardModelPool({"far": VLLMClassifyRM(fake.url, "rm", retries=2, backoff_s=0.0, timeout_s=5)})
    with pytest.raises(RewardModelError) as caught:
        pool.score([0], batch(1))
    assert caught.value.kind == "error" and "\n" not in str(caught.value)
    assert f"{fake.url}/classify failed after 3 attempt(s): HTTP 500: CUDA out of memory | Traceback" in str(caught.value)
    assert pool.fault_counts() == {"far": 1}


def test_5xx_and_429_are_retried_with_backoff_and_4xx_are_not(servers):
    fake = servers(FakeVLLM("rm", length_score))
    fake.faults = [(503, fake.error(503, "loading")), (429, fake.error(429, "slow down"))]
    rm = VLLMClassifyRM(fake.url, "rm", retries=2, backoff_s=0.01, timeout_s=5)
    assert rm.score(batch(1)).shape == (1,) and len(fake.posts()) == 3
    fake.faults = [(400, fake.error(400, "bad"))]
    with pytest.raises(RemoteRMError, match="1 attempt"):
        rm.score(batch(1))


def test_a_server_that_hangs_times_out_and_a_dead_one_fails_fast(servers):
    fake = servers(FakeVLLM("rm", length_score))
    fake.delay_s = 2.0
    started = time.perf_counter()
    with pytest.raises(RemoteRMError, match="failed after 2 attempt.*(timed out|TimeoutError)"):
        VLLMClassifyRM(fake.url, "rm", retries=1, backoff_s=0.0, timeout_s=0.3).score(batch(1))
    assert time.perf_counter() - started < 1.8  # two 0.3 s waits, never the server's 2 s
    with pytest.raises(RemoteRMError, match="ConnectionRefusedError"):
        VLLMClassifyRM(dead_url(), "rm", **FAST).score(batch(1))


def test_too_few_scores_is_a_wrong_count_fault_and_nan_comes_back_as_nan(servers):
    fake = servers(FakeVLLM("rm", length_score))
    fake.few = True
    pool = RewardModelPool({"far": VLLMClassifyRM(fake.url, "rm", **FAST)})
    with pytest.raises(RewardModelError) as caught:
        pool.score([0], batch(3))
    assert caught.value.kind == "wrong_count" and "returned 0 score(s) for 1 input(s)" in str(caught.value)  # chat form: one each
    fake.few, fake.nan = False, True
    assert pool.score([0], batch(2))[0].isnan().all()  # the step's fault check sees NaN (nonfinite_scores)


def test_error_message_reads_every_shape():
    assert error_message(b'{"error":{"message":"m1","type":"t","param":null,"code":400}}') == "m1"
    assert error_message(b'{"object":"error","message":"m2","type":"t","param":null,"code":400}') == "m2"
    assert error_message(b'{"error":"m3"}') == "m3"
    assert error_message(b'{"detail":"Method Not Allowed"}') == "Method Not Allowed"
    assert error_message(b"Internal Server Error") == "Internal Server Error"
    assert error_message(b"") == "(empty body)"


# ----- tokens ---------------------------------------------------------------------------------------------------

def test_the_bearer_token_comes_from_the_named_variable_and_never_shows(servers, monkeypatch):
    secret = "sk-test-4f2a9c"
    fake = servers(FakeVLLM("rm", length_score, token=secret))
    monkeypatch.setenv("LASER_TEST_TOKEN", secret)
    rm = VLLMClassifyRM(fake.url, "rm", token_env="LASER_TEST_TOKEN", **FAST)
    rm.check()
    assert rm.score(batch(1)).shape == (1,) and fake.requests[-1]["headers"]["authorization"] == f"Bearer {secret}"
    assert secret not in repr(vars(rm)) and secret not in repr(vars(rm.endpoint))  # only the name is kept
    fake.faults = [(400, fake.error(400, f"token {secret} is not allowed here"))]
    with pytest.raises(RemoteRMError) as caught:
        rm.score(batch(1))
    assert secret not in str(caught.value) and "token *** is not allowed" in str(caught.value)
    monkeypatch.setenv("LASER_TEST_TOKEN", "wrong-token")
    assert "refused the request (GET /v1/models: HTTP 401: Unauthorized)" in rm.preflight()
    monkeypatch.delenv("LASER_TEST_TOKEN")
    with pytest.raises(LaserConfigError, match="token_env='LASER_TEST_TOKEN'.*not set"):
        rm.check()


# ----- OpenRLHF reward server -----------------------------------------------------------------------------------

def test_openrlhf_server_gets_query_prompts_labels_and_its_rewards_are_read(servers):
    fake = servers(FakeOpenRLHF(lambda query, prompt, label: float(query.endswith(f" {label}"))))
    rm = OpenRLHFRewardRM(fake.url, batch_size=2, **FAST)
    scoring = batch(3)
    scoring.responses[1] = " 4"  # right answer to "what is 1 + 3?"
    scores = rm.score(scoring)
    bodies = sorted(fake.posts("/get_reward"), key=lambda body: len(body["query"]), reverse=True)
    assert [set(b) for b in bodies] == [{"query", "prompts", "labels"}] * 2
    assert bodies[0] == {"query": ["Q: what is 0 + 3?\nA: 5", "Q: what is 1 + 3?\nA: 4"],
                         "prompts": ["Q: what is 0 + 3?\nA:", "Q: what is 1 + 3?\nA:"], "labels": ["3", "4"]}
    assert scores.tolist() == [0.0, 1.0, 0.0]
    assert rm.preflight() is None  # serve_rm.py has no health route: its 405 still shows a server is there
    fake.faults = [(500, b"Internal Server Error")]
    with pytest.raises(RemoteRMError, match=f"{fake.url}/get_reward failed after 1 attempt.*HTTP 500: Internal"):
        rm.score(batch(1))
    none = servers(FakeOpenRLHF(lambda q, p, label: None))
    assert OpenRLHFRewardRM(none.url, **FAST).score(batch(2)).isnan().all()  # null rewards: NaN, a step fault
    assert "unreachable" in OpenRLHFRewardRM(dead_url(), **FAST).preflight()


# ----- OpenAI-compatible judge ----------------------------------------------------------------------------------

def test_openai_judge_asks_per_response_and_parses_the_rating(servers):
    def judge(messages):
        response = messages[-1]["content"].split("[The Start of Assistant's Answer]\n")[1].split("\n[The End")[0]
        return "No rating, sorry." if response == " 55" else f"Fine. Rating: [[{len(response.strip()) + 1}]]"

    fake = servers(FakeOpenAIChat("judge-7b", judge))
    rm = OpenAIJudgeRM(fake.url, "judge-7b", max_tokens=32, max_in_flight=2, **FAST)
    scores = rm.score(batch(3))
    bodies = fake.posts("/v1/chat/completions")
    assert len(bodies) == 3 and set(bodies[0]) == {"model", "messages", "max_tokens", "temperature"}
    assert bodies[0]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert any("[Question]\nwhat is 0 + 3?\n\n[The Start of Assistant's Answer]\n 5\n" in b["messages"][1]["content"]
               for b in bodies)  # the raw question and the response, in the judging prompt
    assert scores[0] == 2.0 and scores[2] == 4.0 and math.isnan(scores[1]) and rm.parse_failures == 1
    assert rm.tokens_processed > 0 and rm.preflight() is None
    assert "does not serve model 'gpt'" in OpenAIJudgeRM(fake.url, "gpt", **FAST).preflight()
    with pytest.raises(LaserConfigError, match="score_pattern"):
        OpenAIJudgeRM(fake.url, "judge-7b", score_pattern="no group")


def test_the_first_request_to_fail_for_good_ends_the_whole_call(servers):
    """64 responses in the chat form against a failing server: not 64 x (retries + 1) requests and backoffs."""
    fake = servers(FakeVLLM("rm", length_score))
    fake.faults = [(500, fake.error(500, "dead engine"))] * 1000
    rm = VLLMClassifyRM(fake.url, "rm", max_in_flight=4, retries=2, backoff_s=0.2, timeout_s=5)
    started = time.perf_counter()
    with pytest.raises(RemoteRMError, match="HTTP 500: dead engine"):
        rm.score(batch(64))
    assert time.perf_counter() - started < 3 and len(fake.posts()) <= 4 * 3  # the first 4 in flight, no more
