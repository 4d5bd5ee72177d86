"""`hark check` probes each cascade stage: reachable, key accepted, model listed, and names the fix."""

from __future__ import annotations

from daemon.answer.cascade.stage import check_stage
from daemon.config.settings import CascadeLlmSettings, Secrets
from tests.cascade_server import ThreadedCascadeServer
from tests.fixtures_realtime import API_KEY


async def test_each_problem_names_its_fix(cascade_server: ThreadedCascadeServer) -> None:
    good = CascadeLlmSettings(base_url=cascade_server.url, timeout_s=2.0)
    ok, line = await check_stage("llm", good, Secrets(openai_api_key=API_KEY))
    assert ok and "model listed" in line
    ok, line = await check_stage("llm", good, Secrets(openai_api_key="sk-wrong"))
    assert not ok and "HTTP 401" in line and "OPENAI_API_KEY" in line
    ok, line = await check_stage("llm", good, Secrets())
    assert not ok and "not set" in line
    ok, line = await check_stage("llm", good.model_copy(update={"model": "llama9"}), Secrets(openai_api_key=API_KEY))
    assert not ok and "does not list" in line and "gpt-4.1-mini" in line
    gone = good.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})
    ok, line = await check_stage("llm", gone, Secrets(openai_api_key=API_KEY))
    assert not ok and "is the server running" in line
