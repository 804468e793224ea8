"""A replacement agent picks up the conversation where the lost one left it.

When the call's workflow dispatches a new agent for a call under way, the dispatch's metadata
says `"resume": true`. The new agent then reads the conversation so far from the workflow
(`get_transcript`, the workflow's own record: nothing is kept in the agent), starts Sarah with
it as her chat context and, instead of the greeting, says one short sentence that picks up
the thread.
"""

from __future__ import annotations

import json

from livekit.agents.llm import ChatContext
from temporalio.client import Client

from core.log import get_logger
from core.models import QUERY_GET_TRANSCRIPT, TranscriptEntry, TranscriptPage, call_workflow_id

log = get_logger(__name__)

MAX_LINES = 200  # the latest lines are what the next reply needs; older ones add only cost
RESUME_INSTRUCTIONS = (
    "You are taking this call over after a short technical interruption on our side; the "
    "conversation so far is above. In one short sentence, apologise for the interruption and "
    "pick up exactly where the conversation left off. Do not greet the customer again and do "
    "not repeat the recording notice."
)


def wants_resume(metadata: str) -> bool:
    """True when the job's dispatch metadata asks the agent to resume a call under way."""
    try:
        data = json.loads(metadata) if metadata else None
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("resume") is True


async def conversation_so_far(client: Client, call_id: str) -> list[TranscriptEntry]:
    """The call's final lines from its workflow, oldest first (the latest `MAX_LINES`)."""
    handle = client.get_workflow_handle(call_workflow_id(call_id))
    lines: list[TranscriptEntry] = []
    after = 0
    while True:
        page = await handle.query(QUERY_GET_TRANSCRIPT, after, result_type=TranscriptPage)
        lines.extend(page.lines)
        if not page.more or not page.lines:
            break
        after = page.lines[-1].seq
    return lines[-MAX_LINES:]


def chat_context(lines: list[TranscriptEntry]) -> ChatContext:
    """The lines as chat turns: the customer as the user, Sarah as the assistant, anyone else
    (a supervisor who took over) as a user turn that says who spoke."""
    ctx = ChatContext.empty()
    for line in lines:
        if line.speaker == "assistant":
            ctx.add_message(role="assistant", content=line.text, id=f"resumed-{line.id}")
        elif line.speaker == "customer":
            ctx.add_message(role="user", content=line.text, id=f"resumed-{line.id}")
        else:
            ctx.add_message(
                role="user", content=f"({line.speaker}) {line.text}", id=f"resumed-{line.id}"
            )
    return ctx
