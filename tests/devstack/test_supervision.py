"""devstack supervises the product's processes like compose's restart policy: `kill -9` of the
worker (or the API) mid-call is logged, the process comes back, and every call still completes
with its recording stored. `--infra-only` starts the LiveKit emulator too."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core.settings import ROOT
from devstack.services import free_port
from devstack.up import (
    RESTART_FIRST_DELAY_S,
    RESTART_MAX_DELAY_S,
    ManagedProcess,
    Supervised,
    _supervise,
    read_env_file,
)


def _http(method: str, url: str, body: object = None, token: str = "") -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {text!r} in {timeout} s:\n{log.read_text()}"
        time.sleep(0.3)


def _child(root: int, needle: str) -> psutil.Process:
    for c in psutil.Process(root).children(recursive=True):
        try:
            if needle in " ".join(c.cmdline()):
                return c
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no child process running {needle!r}")


def _devstack(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path, dict[str, int]]:
    ports = {name: free_port() for name in ("api", "temporal", "ui", "lk", "s3", "pg")}
    argv = [
        sys.executable, "-m", "devstack", "up", *extra,
        "--api-port", str(ports["api"]), "--temporal-port", str(ports["temporal"]),
        "--temporal-ui-port", str(ports["ui"]), "--livekit-port", str(ports["lk"]),
        "--s3-port", str(ports["s3"]), "--postgres-port", str(ports["pg"]),
    ]  # fmt: skip
    log = tmp_path / "up.log"
    out = open(log, "wb")  # noqa: SIM115 - the child owns it
    env = {**os.environ, "DEVSTACK_DIR": str(tmp_path / "stack"), "RATE_LIMIT_PER_MINUTE": "1000",
           "MAX_CALLS_PER_CLIENT": "1000", "MAX_WAITING_CALLS": "1000",
           "MAX_LIVE_AI_CALLS": "1000"}  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    out.close()
    return proc, log, ports


@pytest.fixture
def stop_after() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_killed_worker_and_api_come_back_and_every_call_completes(
    tmp_path: Path, stop_after: list[subprocess.Popen[bytes]]
) -> None:
    proc, log, ports = _devstack(tmp_path, "--standin-pace", "1.0")
    stop_after.append(proc)
    _wait_for(log, "Ctrl-C stops everything", proc, 180)
    api = f"http://127.0.0.1:{ports['api']}"
    token = read_env_file(tmp_path / "stack" / "env")["DEVSTACK_ADMIN_TOKEN"]

    def ready() -> None:
        deadline = time.monotonic() + 90
        while True:  # the API may be (re)starting or still connecting to Temporal
            try:
                if _http("GET", f"{api}/readyz")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "the API never became ready"
            time.sleep(0.5)

    def new_call(name: str) -> str:
        status, body = _http("POST", f"{api}/api/calls", {"customer_name": name})
        assert status == 201, body
        return str(body["call_id"])

    ready()

    calls = [new_call(f"Before {i}") for i in range(3)]
    worker = _child(proc.pid, "worker.py")
    time.sleep(1.5)  # mid-call: the stand-in is speaking
    worker.send_signal(signal.SIGKILL)
    print(f"killed the worker (pid {worker.pid}) with 3 calls live")
    calls += [new_call(f"During {i}") for i in range(2)]  # start while the worker is down
    _wait_for(log, "worker restarted", proc, 60)
    api_proc = _child(proc.pid, "-m api")
    api_proc.send_signal(signal.SIGKILL)
    print(f"killed the API (pid {api_proc.pid})")
    _wait_for(log, "api restarted", proc, 60)
    ready()
    calls.append(new_call("After"))

    deadline = time.monotonic() + 180
    pending = set(calls)
    while pending and time.monotonic() < deadline:
        for call_id in list(pending):
            try:
                status, body = _http("GET", f"{api}/api/calls/{call_id}", token=token)
            except (urllib.error.URLError, ConnectionError):
                continue
            if status == 200 and (body["status"], body["recording_status"]) == (
                "completed",
                "stored",
            ):
                pending.discard(call_id)
        time.sleep(1)
    assert not pending, f"calls that never completed with a stored recording: {pending}"
    for call_id in calls:
        status, page = _http("GET", f"{api}/api/calls/{call_id}/transcript", token=token)
        texts = [line["text"] for line in page["lines"]]
        assert len(texts) == 7 and len(set(texts)) == 7, (call_id, texts)  # greeting + 6 lines
    text = log.read_text()
    assert "worker died (exit -9); restarting in" in text
    assert "api died (exit -9); restarting in" in text
    print(f"checked: {len(calls)} calls completed, recordings stored, 7 distinct lines each")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, log.read_text()


def test_infra_only_starts_the_livekit_emulator(
    tmp_path: Path, stop_after: list[subprocess.Popen[bytes]]
) -> None:
    proc, log, ports = _devstack(tmp_path, "--infra-only")
    stop_after.append(proc)
    _wait_for(log, "Ctrl-C stops everything", proc, 180)
    status, state = _http("GET", f"http://127.0.0.1:{ports['lk']}/_emulator/state")
    assert status == 200 and "rooms" in state, state
    assert "starting worker" not in log.read_text()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, log.read_text()


async def test_restart_delay_doubles_up_to_the_cap_and_resets_after_a_good_run(
    tmp_path: Path,
) -> None:
    proc = ManagedProcess("crasher", [sys.executable, "-c", "raise SystemExit(3)"],
                          tmp_path / "crasher.log")  # fmt: skip
    sup = Supervised(proc)
    proc.proc = subprocess.Popen(proc.argv)
    proc.proc.wait()
    delays = []
    now = sup.started_at
    for _ in range(9):
        msg = sup.check(now)
        assert msg is not None and "crasher died (exit 3)" in msg
        assert sup.restart_at is not None
        delays.append(round(sup.restart_at - now, 2))
        sup.restart_at = None  # as if restarted and crashed again at once
    assert delays[:3] == [
        RESTART_FIRST_DELAY_S,
        2 * RESTART_FIRST_DELAY_S,
        4 * RESTART_FIRST_DELAY_S,
    ]
    assert max(delays) == RESTART_MAX_DELAY_S
    sup.started_at = now - 60  # it ran a minute before this crash: the delay starts over
    sup.check(now)
    assert sup.restart_at == now + RESTART_FIRST_DELAY_S


async def test_an_infrastructure_process_that_dies_stops_the_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A product process is restarted (above); Temporal, PostgreSQL, S3 or the emulator is not.
    infra = ManagedProcess("postgres", [sys.executable, "-c", "raise SystemExit(4)"],
                           tmp_path / "postgres.log")  # fmt: skip
    infra.proc = subprocess.Popen(infra.argv)
    infra.proc.wait()
    assert await _supervise([infra], [], asyncio.Event()) == 1
    assert "postgres died (exit 4); the stack stops" in capsys.readouterr().err
