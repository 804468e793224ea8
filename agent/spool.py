"""Signals a job could not deliver before it ended, kept on local disk and sent later.

When a call's job ends while Temporal is unreachable (past `AGENT_FLUSH_TIMEOUT_S`), the
lines and alerts still queued are written to `AGENT_SPOOL_DIR` (one JSON file per job, the
payloads in Temporal's own JSON encoding, file mode 0600: they hold customer words). The next
job to start on this machine claims each file (an atomic rename, so two jobs never send one
twice) and sends its signals in order; the workflow ignores any it already has (every signal
carries an id). A workflow that no longer exists takes nothing: its file is deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from core import models as m
from core.log import get_logger

log = get_logger(__name__)

# What each signal carries, to decode a spooled payload back into its dataclass.
SIGNAL_TYPES: dict[str, type] = {
    m.SIGNAL_AGENT_JOINED: m.AgentJoined,
    m.SIGNAL_TRANSCRIPT: m.TranscriptLine,
    m.SIGNAL_TRANSCRIPT_BATCH: m.TranscriptBatch,
    m.SIGNAL_SILENCE: m.SilenceSignal,
    m.SIGNAL_PARTICIPANT_JOINED: m.ParticipantJoined,
    m.SIGNAL_PARTICIPANT_LEFT: m.ParticipantLeft,
    m.SIGNAL_RECORDING_CONSENT: m.RecordingConsentSignal,
    m.SIGNAL_AGENT_METRICS: m.AgentMetrics,
    m.SIGNAL_AGENT_ALERT: m.AgentAlert,
}
_CONVERTER = DataConverter.default.payload_converter


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def save(self, workflow_id: str, call_id: str, items: list[tuple[str, Any]]) -> Path | None:
        """Write the undelivered signals of one job; None when there were none."""
        if not items:
            return None
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        rows = []
        for name, payload in items:
            (encoded,) = _CONVERTER.to_payloads([payload])
            rows.append({"signal": name, "payload": encoded.SerializeToString().hex()})
        path = self.dir / f"{workflow_id}.{uuid.uuid4().hex[:8]}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"workflow_id": workflow_id, "call_id": call_id, "signals": rows}, f)
        tmp.rename(path)
        log.warning("signals_spooled", call_id=call_id, count=len(rows), path=str(path))
        return path

    async def resend(self, client: Client) -> int:
        """Send every spooled file's signals in order; returns how many were sent."""
        if not self.dir.is_dir():
            return 0
        sent = 0
        for path in sorted(self.dir.glob("*.json")):
            claimed = path.with_suffix(f".sending-{os.getpid()}")
            try:
                path.rename(claimed)  # another job got there first: not ours
            except FileNotFoundError:
                continue
            sent += await self._send_file(client, claimed, path)
        return sent

    async def _send_file(self, client: Client, claimed: Path, original: Path) -> int:
        data = _read(claimed)
        handle = client.get_workflow_handle(data["workflow_id"])
        call_id = data.get("call_id", "")
        done = 0
        for row in data["signals"]:
            payload = Payload.FromString(bytes.fromhex(row["payload"]))
            (value,) = _CONVERTER.from_payloads([payload], [SIGNAL_TYPES[row["signal"]]])
            try:
                await handle.signal(row["signal"], value)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    log.warning(
                        "spool_workflow_gone", call_id=call_id, left=len(data["signals"]) - done
                    )
                    break
                # Still unreachable: put the rest back for the next start.
                data["signals"] = data["signals"][done:]
                _put_back(claimed, original, data)
                log.warning("spool_resend_failed", call_id=call_id, error=exc.status.name)
                return done
            done += 1
        _remove(claimed)
        log.info("spool_resent", call_id=call_id, count=done)
        return done


# Small files on local disk: plain blocking calls (a few milliseconds at a job's start).
def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _put_back(claimed: Path, original: Path, data: dict[str, Any]) -> None:
    claimed.write_text(json.dumps(data))
    claimed.rename(original)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
