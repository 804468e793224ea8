"""A callback's call opens with why it happens: `POST /internal/calls/{call_id}/opening` (the
call's roomAdmin token, agent/api_client.py) answers the callback's reason and what the earlier
call said (`core.call_links.CallOpening`), or `{"opening": null}` for any other call.

The agent asks once, before Sarah starts; no answer (the API down, a timeout) is no opening:
Sarah greets as on any call rather than keep the customer waiting. Nothing of it is logged but
ids: the reason and the lines are customer data.
"""

from __future__ import annotations

import aiohttp

from agent.api_client import AgentApi
from agent.greetings import prompt_texts
from core.call_links import CallOpening
from core.log import get_logger

log = get_logger(__name__)


async def fetch_opening(api: AgentApi, *, timeout_s: float = 5.0) -> CallOpening | None:
    """The call's opening; None when it is not a callback's call or the API did not answer."""
    try:
        status, body = await api.post("opening", {}, timeout_s=timeout_s)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: not JSON
        log.warning("opening_unavailable", call_id=api.call_id, error=type(exc).__name__)
        return None
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("opening"), dict):
        if status != 200:
            log.warning("opening_unavailable", call_id=api.call_id, status=status)
        return None
    opening = CallOpening.from_json(body["opening"])
    log.info("callback_opening", call_id=api.call_id, callback_id=opening.callback_id,
             origin_call_id=opening.origin_call_id)  # fmt: skip
    return opening


def opening_instructions(opening: CallOpening) -> str:
    """The section of Sarah's instructions that tells her why she calls and what was said."""
    text = "\n## Why you are calling\n" + prompt_texts()["instructions"]["callback"] + "\n"
    if opening.reason:
        text += f"The customer asked to be called back about: {opening.reason}.\n"
    if opening.summary:
        text += f"Summary of the earlier call: {opening.summary}\n"
    if opening.earlier:
        text += "How the earlier call ended:\n" + "\n".join(f"- {x}" for x in opening.earlier)
        text += "\n"
    return text
