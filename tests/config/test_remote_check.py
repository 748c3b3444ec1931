"""An RM server that is down, refuses the token or lacks the model stops the run before step 1, in one line
naming each such arm (laser/config/remote_check.py)."""

from __future__ import annotations

import socket
import time

import pytest
from fake_servers import FakeOpenRLHF, FakeVLLM

from laser.config.remote_check import check_remote_arms, remote_arm_nodes
from laser.errors import LaserConfigError
from laser.run import run


def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def arm(target: str, url: str, **more) -> dict:
    return {"_target_": f"laser.rewards.{target}", "url": url, **more}


@pytest.fixture
def fakes():
    vllm, openrlhf = FakeVLLM("rm", lambda item: 0.0), FakeOpenRLHF(lambda q, p, label: 0.0)
    yield vllm, openrlhf
    vllm.shutdown()
    openrlhf.shutdown()


def test_remote_arms_are_found_anywhere_in_the_pool_and_each_server_asked_once(fakes):
    vllm, openrlhf = fakes
    cfg = {"rm_pool": {"_target_": "laser.rewards.category_judges.category_judges", "categories": ["addition"],
                       "models": {"v": arm("vllm_classify.VLLMClassifyRM", vllm.url, model="rm"),
                                  "o": arm("openrlhf.OpenRLHFRewardRM", openrlhf.url),
                                  "f": {"_target_": "laser.rewards.trl_function.TRLRewardFunction",
                                        "function": "laser.rewards.reward_functions.answer_match"}}}}
    assert [key for key, _ in remote_arm_nodes(cfg["rm_pool"])] == ["rm_pool.models.v", "rm_pool.models.o"]
    assert check_remote_arms(cfg) == 2
    assert [r["path"] for r in vllm.requests] == ["/v1/models"] and [r["path"] for r in openrlhf.requests] == [
        "/get_reward"]  # one GET each; OpenRLHF's 405 answer is enough
    assert vllm.posts() == [] and openrlhf.posts() == []  # nothing scored


def test_every_arm_that_cannot_serve_is_named_in_one_line(fakes, monkeypatch):
    vllm, _ = fakes
    dead = dead_url()
    cfg = {"rm_pool": {"models": {"down": arm("vllm_classify.VLLMClassifyRM", dead, model="rm"),
                                  "wrong_model": arm("vllm_classify.VLLMClassifyRM", vllm.url, model="other"),
                                  "judge": arm("openai_judge.OpenAIJudgeRM", dead, model="j"),
                                  "ok": arm("vllm_classify.VLLMClassifyRM", vllm.url, model="rm")}}}
    started = time.perf_counter()
    with pytest.raises(LaserConfigError) as caught:
        check_remote_arms(cfg, timeout_s=2)
    message = str(caught.value)
    assert time.perf_counter() - started < 10 and "\n" not in message
    assert message.startswith("3 remote RM(s) cannot serve: rm_pool.models.down: " + dead + " is unreachable")
    assert "rm_pool.models.wrong_model: " + vllm.url + " does not serve model 'other' (GET /v1/models lists ['rm'])" in message
    assert "rm_pool.models.judge: " in message and "rm_pool.models.ok" not in message
    monkeypatch.delenv("LASER_NO_SUCH_TOKEN", raising=False)
    cfg = {"rm_pool": {"models": {"ok": arm("vllm_classify.VLLMClassifyRM", vllm.url, model="rm",
                                            token_env="LASER_NO_SUCH_TOKEN")}}}
    with pytest.raises(LaserConfigError, match="token_env='LASER_NO_SUCH_TOKEN'.*not set"):
        check_remote_arms(cfg)


def test_a_run_whose_rm_server_is_down_stops_before_step_1(make_config, tmp_path, monkeypatch):
    dead = dead_url()
    monkeypatch.setenv("LASER_VLLM_URL", dead)
    out = tmp_path / "run"
    with pytest.raises(LaserConfigError, match=f"rm_pool.models.served_classifier: {dead} is unreachable"):
        run(make_config(["rm_pool=mixed_example"], output_dir=out, legacy=False), out)
    assert not (out / "config.yaml").exists() and not (out / "selections.jsonl").exists()
