"""Final transcript lines, written ahead to local disk, then stored through the API.

    CallBridge ──add(line)──▶ spool file (append + fsync) ──POST /internal/calls/{id}/lines──▶ API
               └──signal──▶ SignalQueue ──▶ CallWorkflow (decides; stores no line)

PostgreSQL (through the API) is the system of record for what was said, so a line must survive
the agent process dying the instant after it was heard. `FinalLines.add` appends the line to the
job's spool file and fsyncs it before the line goes anywhere (the caller signals the workflow
only after `add` returned). A background task POSTs what is pending, in order, several lines at
once when they queued up, retrying with capped backoff while the API or its database is down;
a line leaves the file (which is compacted) once the API answered that it is stored. The API
stores a line once by its id, so sending again after a crash or a lost answer is always safe.

Files: `AGENT_SPOOL_DIR/lines-<call_id>-<random>.jsonl`, mode 0600 (customer words), one JSON
record a line. The job holds an exclusive `flock` on its file while it lives; the kernel drops
it when the process dies, even by SIGKILL. `send_orphans` (each new job runs it) takes every file
whose lock it can get (its owner is dead), renames it to a name of its own (the claim: a rename
is atomic, so two jobs never send one file twice), then sends its lines to the API and signals
them to the call's workflow again (the workflow ignores an id it has; a workflow that has ended
takes nothing). A torn last record (the process died while writing it) was never fsynced, so it
was never sent anywhere either, and is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent.api_client import AgentApi
from agent.signals import ClientFactory, SignalQueue
from core.log import get_logger
from core.models import (
    LINE_TEXT_MAX,
    LINES_PER_POST_MAX,
    LINES_POST_MAX_BYTES,
    SIGNAL_TRANSCRIPT,
    AgentMetrics,
    TranscriptLine,
    call_workflow_id,
    is_call_id,
)

log = get_logger(__name__)

PREFIX = "lines-"
SUFFIX = ".jsonl"


def fit_for_storage(line: TranscriptLine) -> TranscriptLine:
    """The line as the API will take it: text cut at `LINE_TEXT_MAX` characters (a longer one
    would be refused for good, and the workflow sees exactly what is stored)."""
    if len(line.text) <= LINE_TEXT_MAX:
        return line
    return dataclasses.replace(line, text=line.text[:LINE_TEXT_MAX])


def api_line(line: TranscriptLine) -> dict[str, Any]:
    """The line as `POST /internal/calls/{call_id}/lines` takes it (api.schemas.FinalLine)."""
    return {
        "id": line.id,
        "speaker": line.speaker,
        "text": line.text,
        "confidence": _confidence(line.confidence),
        "started_at": line.started_at,
        "ended_at": line.ended_at,
        "interrupted": line.interrupted,
        "metrics": _figures(line.metrics),
    }


def _figures(metrics: AgentMetrics | None) -> dict[str, Any] | None:
    """The turn's figures as the API takes them: one it would refuse (NaN, negative) is left
    out rather than costing the line."""
    if metrics is None:
        return None
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(metrics).items():
        if isinstance(value, float) and not (0.0 <= value <= 3600.0):
            continue  # also drops NaN
        out[key] = value
    return out


def _confidence(value: object) -> float:
    # A number the API would refuse (NaN, out of range) must not cost the line its storage.
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1.0
    return min(1.0, max(0.0, number)) if math.isfinite(number) else 1.0


def _record(call_id: str, line: TranscriptLine) -> bytes:
    # ensure_ascii: a lone surrogate from STT is written as an escape, not refused
    return (json.dumps({"call_id": call_id, "line": dataclasses.asdict(line)}) + "\n").encode()


def _line_from(data: dict[str, Any]) -> TranscriptLine:
    metrics = data.pop("metrics", None)
    line = TranscriptLine(**data)
    line.metrics = AgentMetrics(**metrics) if isinstance(metrics, dict) else None
    return line


class FinalLines:
    """One job's final lines for one call: written ahead to its spool file, then POSTed.

    `add()` never blocks on the network and never raises for an outage; `aclose()` flushes
    what it can within its timeout and leaves the rest in the file for the next job.
    """

    def __init__(
        self,
        directory: str | Path,
        api: AgentApi,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        post_timeout_s: float = 10.0,
        _claimed: tuple[Path, int] | None = None,
    ) -> None:
        self.call_id = api.call_id
        self.api = api
        self.dir = Path(directory)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._post_timeout_s = post_timeout_s
        self._pending: deque[tuple[TranscriptLine, bytes]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._closed = False
        self._rewrite_due = False
        self.stored = 0  # lines the API answered for (stored now or before)
        self.dropped = 0  # lines the API refused for good (logged)
        if _claimed is not None:
            self.path, self._fd = _claimed
        else:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = self.dir / f"{PREFIX}{self.call_id}-{uuid.uuid4().hex[:12]}{SUFFIX}"
            self._fd = _open_locked(self.path)
            _fsync_dir(self.dir)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, line: TranscriptLine) -> None:
        """Write `line` ahead (append + fsync: it survives this process), then queue its POST.
        Call before the line is signalled or shown anywhere."""
        record = _record(self.call_id, line)
        self._pending.append((line, record))
        try:
            if self._rewrite_due:
                self._compact()  # the file may end in a torn record: write it whole again
            else:
                os.write(self._fd, record)
                os.fsync(self._fd)
            self._rewrite_due = False
        except OSError as exc:  # a full disk: the line is still sent, from memory
            self._rewrite_due = True
            log.error("spool_write_failed", call_id=self.call_id, error=type(exc).__name__)
        self._idle.clear()
        self._wake.set()
        self.start()

    def _adopt(self, lines: list[TranscriptLine]) -> None:
        """Take over a claimed file's lines: the file is written anew with exactly these (a
        torn record gone), and they are sent as if added."""
        self._pending.extend((line, _record(self.call_id, line)) for line in lines)
        self._compact()
        if self._pending:
            self._idle.clear()

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"lines:{self.call_id}")

    async def drain(self, timeout: float) -> bool:
        """Wait until every line added so far is stored; False if `timeout` ran out first."""
        self.start()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float) -> bool:
        """Store what is pending (up to `timeout` seconds), then stop. True if nothing was left;
        otherwise the lines stay in the file, unlocked, for the next job to claim."""
        done = await self.drain(timeout) if self._pending else True
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if done:
            _remove(self.path)
        else:
            log.error("lines_left_in_spool", call_id=self.call_id, pending=self.pending)
        os.close(self._fd)  # releases the lock
        return done

    # sending ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._next_batch()
            answer = await self._post(batch)
            if answer is None:
                await self._back_off()
                continue
            self._failures = 0
            for _ in batch:  # still at the front: add() only appends
                self._pending.popleft()
            try:
                self._compact()
            except OSError as exc:  # the stored lines stay in the file: resent, stored once
                self._rewrite_due = True
                log.error("spool_compact_failed", call_id=self.call_id, error=type(exc).__name__)

    def _next_batch(self) -> list[TranscriptLine]:
        batch: list[TranscriptLine] = []
        size = 0
        for line, record in self._pending:
            if batch and (
                len(batch) >= LINES_PER_POST_MAX or size + len(record) > LINES_POST_MAX_BYTES
            ):
                break
            batch.append(line)
            size += len(record)
        return batch

    async def _post(self, batch: list[TranscriptLine]) -> bool | None:
        """True once the API has answered for every line of `batch` (stored, or refused for
        good and logged); None to retry the same lines later."""
        body = {"lines": [api_line(line) for line in batch]}
        try:
            status, answer = await self.api.post("lines", body, timeout_s=self._post_timeout_s)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._note_failure(type(exc).__name__)
            return None
        if status == 200:
            self.stored += len(batch)
            new = sum(1 for s in (answer or {}).get("stored", []) if s.get("seq") is not None)
            log.debug("lines_stored", call_id=self.call_id, lines=len(batch), new=new)
            return True
        if status == 422 and len(batch) > 1:
            # One line the API can never take must not hold back the others: one at a time.
            for line in batch:
                while await self._post([line]) is None:
                    await self._back_off()
            return True
        if status in (410, 422):
            # Erased call, or a line the API refuses for good: resending can never store it.
            self.dropped += len(batch)
            reason = (answer or {}).get("error", {}).get("code", f"HTTP {status}")
            log.error(
                "lines_refused", call_id=self.call_id, lines=len(batch),
                ids=[line.id for line in batch], reason=reason,
            )  # fmt: skip
            return True
        # 401 (a token the API cannot check yet), 5xx, a proxy's page: the API may come round.
        self._note_failure(f"HTTP {status}")
        return None

    def _note_failure(self, why: str) -> None:
        self._failures += 1
        if self._failures == 1 or self._failures % 10 == 0:
            log.warning(
                "lines_not_stored_yet", call_id=self.call_id, failures=self._failures,
                pending=self.pending, error=why,
            )  # fmt: skip

    async def _back_off(self) -> None:
        first, cap = self._backoff
        delay = min(cap, first * 2 ** max(0, self._failures - 1))
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    def _compact(self) -> None:
        """Drop stored lines from the file: empty it, or write what is pending to a new file
        (locked before it takes the name, so the lock never lapses) and rename it over."""
        if not self._pending:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.fsync(self._fd)
            return
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:6]}.tmp")
        fd = _open_locked(tmp)
        try:
            os.write(fd, b"".join(record for _, record in self._pending))
            os.fsync(fd)
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            _remove(tmp)
            raise
        _fsync_dir(self.dir)
        os.close(self._fd)
        self._fd = fd


# orphans ---------------------------------------------------------------------------------------


def claim_orphans(directory: str | Path) -> list[tuple[str, Path, int, list[TranscriptLine]]]:
    """Spool files whose writer is dead: (call id, claimed path, locked fd, lines) each."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    claimed = []
    for path in sorted(folder.glob(f"{PREFIX}*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its job is alive (or another job is sending it)
            continue
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError  # compacted or claimed since we opened it
            call_id = path.name[len(PREFIX) :].rsplit("-", 1)[0]
            if not is_call_id(call_id):
                raise FileNotFoundError  # not one of ours
            mine = folder / f"{PREFIX}{call_id}-{uuid.uuid4().hex[:12]}{SUFFIX}"
            os.rename(path, mine)  # the claim
        except FileNotFoundError:
            os.close(fd)
            continue
        lines, torn = _read_lines(fd)
        if torn:
            log.warning("spool_torn_record_skipped", call_id=call_id, records=torn)
        claimed.append((call_id, mine, fd, lines))
    return claimed


def _read_lines(fd: int) -> tuple[list[TranscriptLine], int]:
    with os.fdopen(os.dup(fd), "rb") as f:
        raw = f.read()
    lines, torn = [], 0
    for chunk in raw.split(b"\n"):
        if not chunk.strip():
            continue
        try:
            lines.append(_line_from(json.loads(chunk)["line"]))
        except (ValueError, KeyError, TypeError):
            torn += 1
    return lines, torn


async def send_orphans(
    directory: str | Path,
    api_for: Callable[[str], AgentApi],
    signal: Callable[[str, list[TranscriptLine]], Awaitable[object]] | None = None,
    *,
    timeout_s: float = 30.0,
) -> int:
    """Send the lines of every spool file a dead process left: to the API (stored once by id)
    and, when `signal` is given, to the call's workflow again (`await signal(call_id, lines)`).
    A file the API could not take within `timeout_s` stays for the next job. Returns how many
    lines the API answered for."""
    sent = 0
    for call_id, path, fd, lines in claim_orphans(directory):
        api = api_for(call_id)
        spool = FinalLines(directory, api, _claimed=(path, fd))
        try:
            spool._adopt(lines)
            also = signal(call_id, lines) if signal is not None and lines else asyncio.sleep(0)
            done, _ = await asyncio.gather(spool.aclose(timeout_s), also)
            if done:
                log.info("spool_lines_sent", call_id=call_id, lines=len(lines))
            sent += spool.stored
        finally:
            await api.aclose()
    return sent


def signal_to_workflow(
    connect: ClientFactory, *, timeout_s: float
) -> Callable[[str, list[TranscriptLine]], Awaitable[bool]]:
    """`send_orphans`' `signal`: a call's lines to its workflow through a `SignalQueue`, as the
    bridge sends them (a workflow that has ended takes nothing: logged, not retried)."""

    async def signal(call_id: str, lines: list[TranscriptLine]) -> bool:
        queue = SignalQueue(call_workflow_id(call_id), connect, call_id=call_id)
        for line in lines:
            queue.send(SIGNAL_TRANSCRIPT, line)
        return await queue.aclose(timeout_s)

    return signal


# small files on local disk: plain blocking calls (well under a millisecond but the fsync) ----


def _open_locked(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
