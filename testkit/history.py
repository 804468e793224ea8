"""What a workflow's history holds once decoded: every payload in it (inputs, results, update
results, local-activity markers, headers, failures' encoded attributes), passed through the
payload codec, as someone holding the keys (or the Web UI's codec endpoint) would read it."""

from __future__ import annotations

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import PayloadCodec


def _payloads(msg: Message) -> list[Payload]:
    """Every Payload inside `msg`, depth first."""
    if isinstance(msg, Payload):
        return [msg]
    found: list[Payload] = []
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            entries = list(value.values())
        elif isinstance(value, Message):
            entries = [value]
        else:
            entries = list(value)  # a repeated field
        for entry in entries:
            if isinstance(entry, Message):
                found.extend(_payloads(entry))
    return found


async def decoded_payloads(client: Client, workflow_id: str, codec: PayloadCodec) -> list[bytes]:
    """The data of every payload in the workflow's history (all its runs' events as the
    server keeps them for the latest run), decoded with `codec`; each as bytes."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    out: list[bytes] = []
    for event in history.events:
        raw = _payloads(event)
        for p in await codec.decode(raw):
            out.append(p.data)
    return out
