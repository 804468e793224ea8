"""The real agent path without a key: `prewarm`, the session `entrypoint` builds
(`new_session`: the FallbackAdapters, the real openai plugin), Sarah with the real PostgreSQL
tools and the `ProviderGuard`, driven in text against a scripted OpenAI-compatible server on
localhost (streamed chat completions with a tool call, as OpenAI's API sends them).

What it cannot drive here is `entrypoint`'s room half (connecting to LiveKit, RoomIO, the
customer's audio) and the audio models' services: the emulator has no WebRTC, and nothing
leaves this machine (Deepgram is never reached). Everything after the room is the same code.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

import agent.worker as worker
from agent.config import AgentConfig, load_agent_config
from agent.dealership import Dealership
from agent.resilience import ProviderGuard
from agent.sarah import Sarah
from core.models import new_call_id
from core.settings import RecordingConsent, Settings
from tests.agent.test_sarah import TZ, RecordedSignals


class ScriptedOpenAI:
    """`POST /v1/chat/completions` (stream): a tool call for a question about a make, then an
    answer read from the tool's output. Keeps every request body for assertions."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        tool_outputs = [m for m in body["messages"] if m.get("role") == "tool"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if not tool_outputs:
            deltas: list[dict[str, Any]] = [
                {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                  "function": {"name": "search_inventory", "arguments": ""}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '{"make": "Chevy"}'}}]},
            ]  # fmt: skip
            finish = "tool_calls"
        else:
            first_car = str(tool_outputs[-1]["content"]).splitlines()[1]
            deltas = [
                {"role": "assistant", "content": "Yes! "},
                {"content": f"We have {first_car}"},
            ]
            finish = "stop"
        for i, delta in enumerate(deltas + [{}]):
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": body["model"], "choices": [{"index": 0, "delta": delta,
                     "finish_reason": finish if i == len(deltas) else None}]}  # fmt: skip
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def openai_server() -> AsyncIterator[tuple[str, ScriptedOpenAI]]:
    script = ScriptedOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", script.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1", script
    await runner.cleanup()


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A name lookup of anything but this machine is refused and recorded (the test fails)."""
    real = socket.getaddrinfo
    outside: list[Any] = []

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "127.0.0.1", "localhost", "::1", b"127.0.0.1"):
            outside.append(host)
            raise OSError(f"no network in tests: {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield outside
    assert outside == [], f"the agent tried to reach {outside}"


class Proc:
    """What `prewarm` is handed: a job process's `userdata`."""

    def __init__(self) -> None:
        self.userdata: dict[str, Any] = {}


async def test_a_question_about_a_chevy_through_the_real_agent_path(
    openai_server: tuple[str, ScriptedOpenAI],
    make_settings: Callable[..., Settings],
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    loopback_only: list[Any],
) -> None:
    url, script = openai_server
    settings = make_settings(
        DATABASE_URL=pg_dsn,
        OPENAI_BASE_URL=url,  # no OPENAI_API_KEY: a local server needs none
        DEEPGRAM_API_KEY="unused-in-text",
        CARTESIA_API_KEY="unused-in-text",
        RECORDING_CONSENT="announce",
    )
    cfg: AgentConfig = load_agent_config(settings, _env_file=None, AGENT_TURN_DETECTION="vad")
    monkeypatch.setattr(worker, "process_config", lambda: cfg)

    proc = Proc()
    worker.prewarm(proc)  # type: ignore[arg-type]
    session = worker.new_session(cfg, vad=proc.userdata["vad"])
    signals = RecordedSignals()
    guard = ProviderGuard(session, signals, call_id="keyless")
    guard.attach()
    dealership = Dealership(settings.database_url)
    sarah = Sarah(call_id=new_call_id(), dealership=dealership, signals=signals,
                  consent_policy=RecordingConsent.ANNOUNCE, timezone=TZ)  # fmt: skip
    async with session:
        await session.start(sarah)
        result = await session.run(user_input="Hi, do you have a Chevy?")
    await dealership.aclose()

    result.expect.next_event().is_function_call(name="search_inventory")
    output = result.expect.next_event().is_function_call_output(is_error=False).event().item.output
    assert "Chevrolet" in output  # "Chevy" found the make as the lot spells it
    answer = result.expect.next_event().is_message(role="assistant").event().item.text_content
    assert answer and answer.startswith("Yes! We have") and "Chevrolet" in answer
    # Deepgram cannot run here (no job's HTTP context, no key, no network): its failure is the
    # guard's, and the call goes on in text regardless. Nothing else failed.
    kinds = {a.detail.split(":")[0] for _, a in signals.sent}
    assert kinds <= {"stt_error"} and guard.handoff_sent == bool(kinds)

    first, second = script.requests
    assert first["stream"] is True and first["model"] == cfg.settings.OPENAI_MODEL
    assert {t["function"]["name"] for t in first["tools"]} >= {
        "search_inventory",
        "book_test_drive",
    }
    system = first["messages"][0]
    assert system["role"] in ("system", "developer") and "Sarah" in str(system["content"])
    assert "This call is recorded." in str(system["content"])  # the policy records
    assert any(m.get("role") == "tool" for m in second["messages"])
