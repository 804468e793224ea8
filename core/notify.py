"""PostgreSQL NOTIFY between the writers and the API's live fan-out: the channels, and the
payload each carries.

- `EVENTS_CHANNEL` (`call_events`): `{"call_id", "seq", "kind", "at", "data"}` for each event
  committed to `call_events`, sent in the same transaction by the database function
  `append_call_event` (db/migrations/0005_event_ids.sql); `at` and `data` are left out when the
  whole would not fit a notification.
- `INTERIM_CHANNEL` (`call_interim`): a whole interim-transcript message as UTF-8 JSON (never
  stored), sent by `api.domain.fanout.publish_interim`.

`api.domain.fanout` LISTENs on both and reads payloads with `parse_notification`.
"""

from __future__ import annotations

import json
from typing import Any

EVENTS_CHANNEL = "call_events"
INTERIM_CHANNEL = "call_interim"
# pg_notify refuses a payload of 8000 bytes or more (bytes, not characters).
NOTIFY_MAX_BYTES = 7999


def parse_notification(payload: str) -> dict[str, Any]:
    """A payload of either channel as a dict ({} when it is not one)."""
    try:
        data = json.loads(payload)
    except ValueError:
        # A bare call id is accepted too (the simplest trigger can send only that).
        return {"call_id": payload} if payload else {}
    return data if isinstance(data, dict) else {}
