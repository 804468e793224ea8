"""A scripted LLM for driving `AgentSession.run()` without a model service.

Each `chat()` call takes the next step of the script: `Say(text)` streams text (the text may be
a function of the chat context, e.g. built from the last tool output), `Call(name, args)`
requests a tool. Every chat context it was given is kept in `.requests` for assertions.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.llm import ChatChunk, ChatContext, ChoiceDelta, FunctionToolCall
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS


@dataclass
class Say:
    text: str | Callable[[ChatContext], str]


@dataclass
class Call:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


Step = Say | Call


def last_tool_output(ctx: ChatContext) -> str:
    outputs = [i for i in ctx.items if i.type == "function_call_output"]
    return outputs[-1].output if outputs else ""


class ScriptedLLM(llm.LLM):
    def __init__(self, *steps: Step) -> None:
        super().__init__()
        self.script: deque[Step] = deque(steps)
        self.requests: list[ChatContext] = []
        self._n = 0

    @property
    def model(self) -> str:
        return "scripted"

    def add(self, *steps: Step) -> None:
        self.script.extend(steps)

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        self.requests.append(chat_ctx.copy())
        if not self.script:
            raise AssertionError("the scripted LLM was asked for more replies than scripted")
        self._n += 1
        return _Stream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            step=self.script.popleft(),
            n=self._n,
        )


class _Stream(llm.LLMStream):
    def __init__(self, llm_: ScriptedLLM, *, step: Step, n: int, **kwargs: Any) -> None:
        super().__init__(llm_, **kwargs)
        self._step = step
        self._n = n

    async def _run(self) -> None:
        rid = f"scripted-{self._n}"
        if isinstance(self._step, Call):
            call = FunctionToolCall(
                name=self._step.name,
                arguments=json.dumps(self._step.arguments),
                call_id=f"call_{self._n}",
            )
            self._event_ch.send_nowait(
                ChatChunk(id=rid, delta=ChoiceDelta(role="assistant", tool_calls=[call]))
            )
            return
        text = (
            self._step.text if isinstance(self._step.text, str) else self._step.text(self._chat_ctx)
        )
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            self._event_ch.send_nowait(
                ChatChunk(id=rid, delta=ChoiceDelta(role="assistant", content=piece))
            )
