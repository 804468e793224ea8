"""`python -m devstack up` starts the stack, writes its settings, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from core.settings import ROOT
from devstack.services import free_port
from devstack.up import read_env_file


def _descendants_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_up_prints_the_table_writes_settings_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    ports = {name: free_port() for name in ("api", "temporal", "ui", "lk", "s3", "pg")}
    argv = [
        sys.executable, "-m", "devstack", "up", "--infra-only",
        "--api-port", str(ports["api"]), "--temporal-port", str(ports["temporal"]),
        "--temporal-ui-port", str(ports["ui"]), "--livekit-port", str(ports["lk"]),
        "--s3-port", str(ports["s3"]), "--postgres-port", str(ports["pg"]),
    ]  # fmt: skip
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "DEVSTACK_DIR": str(state)})  # fmt: skip
        deadline = time.monotonic() + 150
        while "Ctrl-C stops everything" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        assert "Ctrl-C stops everything" in text, text
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert len(children) >= 3  # temporal, postgres (+ its workers), s3
        assert f"http://127.0.0.1:{ports['ui']}" in text and "Temporal UI" in text
        # The UI is served through devstack.ui_proxy: its codec sends the dashboard's cookie.
        ui = urllib.request.urlopen(f"http://127.0.0.1:{ports['ui']}/api/v1/settings", timeout=10)
        codec = json.loads(ui.read())["Codec"]
        assert codec["IncludeCredentials"] is True and codec["Endpoint"].endswith("/codec")
        env = read_env_file(state / "env")
        assert env["TEMPORAL_ADDRESS"] == f"127.0.0.1:{ports['temporal']}"
        assert env["API_TOKENS"] == (f"devstack-admin:{env['DEVSTACK_ADMIN_TOKEN']}:admin,"
                                     f"devstack-rep:{env['DEVSTACK_REP_TOKEN']}:rep:general+sales")  # fmt: skip
        assert env["DEVSTACK_ADMIN_TOKEN"] not in text  # the token is in the file, never printed
        assert env["DEVSTACK_REP_TOKEN"] not in text
        assert oct((state / "env").stat().st_mode & 0o777) == "0o600"
        # The phone line: `ops telephony setup` ran against the emulator; its number is printed.
        assert env["SIP_INBOUND_NUMBERS"] == "+15550100000"
        assert "telephony: inbound created ST_" in text and "rule created SDR_" in text
        assert "| Phone " in text and "+15550100000" in text
        from activities import minio_client
        from core.settings import load_settings

        s3 = minio_client(load_settings(**{k: v for k, v in env.items() if k.isupper()}))
        assert s3.bucket_exists(env["RECORDINGS_BUCKET"]) and s3.bucket_exists(env["EGRESS_BUCKET"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()
    assert "stopped temporal" in log.read_text() and "stopped temporal-ui" in log.read_text()
    assert _descendants_alive(children) == []
