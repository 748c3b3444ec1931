"""RMs over HTTP on localhost: the server (`laser.rewards.server`) and the `RemoteRM` client."""

from __future__ import annotations

import http.client
import json
import math
import socket
import subprocess
import sys
import threading

import pytest
import torch
from conftest import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.errors import RewardModelError
from laser.rewards.http_client import wait_for
from laser.rewards.pool import RewardModelPool
from laser.rewards.remote import RemoteRM, RemoteRMError
from laser.rewards.server import RewardServer, build_pool
from laser.rewards.server import main as server_main
from laser.rewards.verifier import VerifierRM
from laser.tasks.base import Example


class TextRM(RewardModel):
    """A deterministic text-only RM: characters of the response minus a tenth of the prompt's;
    fails on the calls listed in `fail_on` (0-based); "nan" responses score NaN."""

    def __init__(self, fail_on: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.fail_on, self.calls = fail_on, 0

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        self.calls += 1
        if self.calls - 1 in self.fail_on:
            raise RuntimeError("the GPU fell off the bus")
        self.tokens_processed += sum(len(r.split()) for r in batch.responses)
        return torch.tensor([float("nan") if r == "nan" else len(r) - len(p) / 10
                             for p, r in zip(batch.prompts, batch.responses, strict=True)])


def texts(n: int) -> ScoringBatch:
    prompts = [f"prompt number {i}" for i in range(n)]
    examples = [Example(str(i), p, "") for i, p in enumerate(prompts)]
    return ScoringBatch(prompts, ["x" * (i + 1) for i in range(n)], examples)


@pytest.fixture
def serve():
    """`serve(pool, **options)` -> a started server on an ephemeral port; all are shut down afterwards."""
    servers: list[RewardServer] = []

    def start(pool: RewardModelPool, **options) -> RewardServer:
        servers.append(RewardServer(pool, host="127.0.0.1", port=0, **options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()


def post(url: str, body: bytes) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/score", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_remote_scores_equal_the_local_rm_and_batches_split_requests(serve):
    server = serve(RewardModelPool({"text": TextRM(), "other": TextRM()}))
    remote = RemoteRM(server.url, "text", batch_size=3)
    batch = texts(7)
    scores = remote.score(batch)
    torch.testing.assert_close(scores, TextRM().score(batch))
    assert server.requests == 3  # 3 + 3 + 1
    assert remote.tokens_processed == 7 and server.pool.token_counts() == {"text": 7, "other": 0}
    nan = remote.score(ScoringBatch(["p"], ["nan"], [Example("0", "p", "")]))
    assert nan.isnan().all()  # non-finite scores travel as they are


class QuestionRM(RewardModel):
    """Remembers the raw questions it is given (`rm_prompts`), as a chat RM reads them; scores 0."""

    def __init__(self) -> None:
        super().__init__()
        self.questions: list[str] = []

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        self.questions += batch.rm_prompts()
        return torch.zeros(len(batch))


def test_a_served_rm_reads_the_raw_questions_not_the_policy_prompts(serve):
    served = QuestionRM()
    server = serve(RewardModelPool({"chat": served}))
    examples = [Example(str(i), f"question {i}", "") for i in range(3)]
    batch = ScoringBatch([f"### Instruction:\nquestion {i}\n\n### Response:\n" for i in range(3)], ["a"] * 3,
                         examples)
    RemoteRM(server.url, "chat", batch_size=2).score(batch)
    assert served.questions == ["question 0", "question 1", "question 2"]
    body = json.dumps({"rm": "chat", "prompts": ["p"], "responses": ["r"]}).encode()
    assert post(server.url, body)[0] == 200 and served.questions[-1] == "p"  # an older client: prompts stand in


def test_a_pool_of_remote_rms_counts_the_remote_tokens(serve):
    server = serve(RewardModelPool({"text": TextRM()}))
    pool = RewardModelPool({"far": RemoteRM(server.url, "text", batch_size=2)})
    torch.testing.assert_close(pool.score([0], texts(5))[0], TextRM().score(texts(5)))
    assert pool.token_counts() == {"far": 5} and pool.call_counts() == {"far": 5}


def test_a_server_that_fails_twice_then_succeeds_is_retried(serve):
    server = serve(RewardModelPool({"flaky": TextRM(fail_on=(0, 1))}))
    scores = RemoteRM(server.url, "flaky", retries=3, backoff_s=0.01).score(texts(2))
    torch.testing.assert_close(scores, TextRM().score(texts(2)))
    assert server.requests == 3 and server.pool.fault_counts() == {"flaky": 2}


def test_the_last_failure_is_one_line_naming_the_url(serve):
    server = serve(RewardModelPool({"broken": TextRM(fail_on=tuple(range(10)))}))
    with pytest.raises(RemoteRMError) as error:
        RemoteRM(server.url, "broken", retries=2, backoff_s=0.01).score(texts(2))
    message = str(error.value)
    assert server.url in message and "3 attempt(s)" in message and "HTTP 500" in message
    assert "the GPU fell off the bus" in message and "\n" not in message and server.requests == 3
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(RemoteRMError, match=f"{dead}.*2 attempt"):
        RemoteRM(dead, "broken", retries=1, backoff_s=0.01, timeout_s=2).score(texts(1))
    pool = RewardModelPool({"far": RemoteRM(dead, "broken", retries=0)})
    with pytest.raises(RewardModelError, match=f"^RM 'far' failed \\(error\\): RemoteRMError: .*{dead}"):
        pool.score([0], texts(1))  # the pool turns it into a fault the module can act on


def test_an_unknown_rm_is_named_and_not_retried(serve):
    server = serve(RewardModelPool({"text": TextRM()}))
    with pytest.raises(RemoteRMError, match=r"HTTP 404: unknown RM 'nope': this server has \['text'\]"):
        RemoteRM(server.url, "nope", backoff_s=0.01).score(texts(1))
    assert server.requests == 1  # a 4xx is the request's fault: no retry


def test_oversize_bodies_get_413_and_oversize_batches_400(serve):
    server = serve(RewardModelPool({"text": TextRM()}), max_request_bytes=2000, max_batch=4)
    body = json.dumps({"rm": "text", "prompts": ["p"], "responses": ["y" * 5000]}).encode()
    status, answer = post(server.url, body)
    assert status == 413 and "max_request_bytes=2000" in answer["error"]
    with pytest.raises(RemoteRMError, match="HTTP 413"):
        big = ScoringBatch(["p"], ["y" * 5000], [Example("0", "p", "")])
        RemoteRM(server.url, "text", backoff_s=0.01).score(big)
    with pytest.raises(RemoteRMError, match="HTTP 400: 5 responses is over max_batch=4"):
        RemoteRM(server.url, "text", batch_size=5).score(texts(5))
    assert RemoteRM(server.url, "text", batch_size=4).score(texts(5)).shape == (5,)
    status, answer = post(server.url, b"{not json")
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = post(server.url, json.dumps({"rm": "text", "prompts": ["a"], "responses": []}).encode())
    assert status == 400 and "1 prompts, 0 responses and 1 questions" in answer["error"]


def test_rms_that_need_the_task_are_refused(serve):
    server = serve(RewardModelPool({"oracle": VerifierRM()}))
    refused = "HTTP 400: RM 'oracle' \\(VerifierRM\\) reads the task.*cannot be served"
    with pytest.raises(RemoteRMError, match=refused):
        RemoteRM(server.url, "oracle").score(texts(1))


def test_health_and_bad_client_config(serve):
    server = serve(RewardModelPool({"text": TextRM()}))
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"status": "ok", "rms": ["text"]}
    connection.close()
    with pytest.raises(LaserConfigError, match="http://HOST:PORT"):
        RemoteRM("localhost:8765", "text")
    RemoteRM("http://127.0.0.1:1", "text").check()  # nothing is contacted before the first score


def test_the_example_yaml_builds_a_pool_of_remote_rms(serve, monkeypatch):
    names = ("zephyr_7b_alpha", "qwen15_7b_chat", "eurus_7b_kto", "olmo_7b_instruct")
    served = {name: TextRM() for name in names}
    server = serve(RewardModelPool(served))
    monkeypatch.setenv("LASER_RM_URL", server.url)
    pool = instantiate(OmegaConf.load(REPO / "conf" / "rm_pool" / "remote_example.yaml"))
    assert pool.names == list(served) and all(isinstance(pool[i], RemoteRM) for i in range(4))
    torch.testing.assert_close(pool.score([2], texts(3))[2], TextRM().score(texts(3)))
    assert [rm.calls for rm in served.values()] == [0, 0, 1, 0]  # only the chosen RM ran, remotely


def test_build_pool_from_a_name_or_a_yaml_path():
    assert build_pool("tiny").names == ["arith_judge", "compare_judge", "noise"]
    assert build_pool("tiny", ["rm_pool.placement=offload"]).placement == "offload"
    assert build_pool(str(REPO / "conf" / "rm_pool" / "oracle.yaml")).names == ["oracle"]
    with pytest.raises(LaserConfigError, match="'no_such_pool' is not a yaml file or one of .*'tiny'"):
        build_pool("no_such_pool")


def test_the_command_line_server_starts_answers_and_stops():
    command = [sys.executable, "-m", "laser.rewards.remote", "--pool", "tiny", "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, process.kill)  # bounds the blocking readline below
    watchdog.start()
    try:
        line = process.stdout.readline()  # "serving [...] at http://127.0.0.1:PORT", or "" if it died
        assert line.startswith("serving ['arith_judge', 'compare_judge', 'noise'] at http://127.0.0.1:"), (
            line + process.stderr.read() if not line else line)
        url = line.split(" at ")[-1].strip()
        with pytest.raises(RemoteRMError, match="'arith_judge' \\(NoisyRM\\) reads the task"):
            RemoteRM(url, "arith_judge").score(texts(1))  # the tiny pool wraps the verifier
    finally:
        watchdog.cancel()
        process.terminate()
        process.communicate(timeout=30)


# ----- the same server in vLLM's /classify shape ---------------------------------------------------------------

def classify(url: str, payload: dict) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/classify", json.dumps(payload).encode(), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_classify_serves_any_text_only_rm_in_the_chat_form_with_vllms_shapes(serve):
    server = serve(RewardModelPool({"text": TextRM(), "oracle": VerifierRM()}), max_batch=4)
    chat = {"model": "text", "messages": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "abc"}]}
    status, answer = classify(server.url, {**chat, "use_activation": False})
    assert status == 200 and set(answer) == {"id", "object", "created", "model", "data", "usage"}
    assert answer["data"] == [{"index": 0, "label": "LABEL_0", "probs": [pytest.approx(3 - 0.2)], "num_classes": 1}]
    status, answer = classify(server.url, chat)  # vLLM's default activation: a sigmoid
    assert answer["data"][0]["probs"] == [pytest.approx(1 / (1 + math.exp(-2.8)))]
    status, answer = classify(server.url, {**chat, "model": "nope"})
    assert status == 404 and answer["error"]["type"] == "NotFoundError" and answer["error"]["code"] == 404
    assert "The model `nope` does not exist" in answer["error"]["message"]
    status, answer = classify(server.url, {"model": "text", "input": ["whole text"]})
    assert status == 400 and "send the chat form" in answer["error"]["message"]
    status, answer = classify(server.url, {**chat, "model": "oracle"})
    assert status == 400 and "cannot be served" in answer["error"]["message"]
    status, answer = classify(server.url, {"model": "text", "input": 5})
    assert status == 400 and answer["error"]["param"] == "input"


def test_wait_for_returns_once_a_server_answers_and_names_a_dead_one(serve):
    server = serve(RewardModelPool({"text": TextRM()}))
    assert wait_for(server.url, 5) is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert f"{dead} is unreachable" in wait_for(dead, 0.5)
    with pytest.raises(SystemExit, match=f"laser: error: {dead} is unreachable"):
        server_main(["--wait-for", dead, "--timeout", "0.5"])
