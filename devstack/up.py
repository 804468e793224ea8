"""`python -m devstack up`: the whole call center on one machine, until Ctrl-C.

Starts Temporal's dev server (Web UI, search attributes, state in `.devstack/temporal.sqlite`),
PostgreSQL (data in `.devstack/pgdata`, migrated), an S3 endpoint with the recordings bucket,
the LiveKit emulator, then the worker, the API and (when its keys are set) the agent. Every
setting it chose is written to `.devstack/env`, which every process of the product reads.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from core.settings import ROOT

from .services import (
    ManagedProcess,
    ServiceError,
    ensure_bucket,
    free_port,
    postgres_dsn,
    postgres_server,
    s3_server,
    temporal_dev_server,
    wait_port,
)
from .ui_proxy import ui_proxy

# DEVSTACK_DIR lets tests run a second stack beside a developer's own.
STATE = Path(os.environ.get("DEVSTACK_DIR") or ROOT / ".devstack")
ENV_FILE = STATE / "env"


@dataclass
class Ports:
    api: int
    temporal: int
    temporal_ui: int
    livekit: int
    s3: int
    postgres: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run the whole call center on this machine (no Docker), until Ctrl-C.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service and process, print where they are")
    up.add_argument("--api-port", type=int, default=int(env("API_PORT", 8000)))
    up.add_argument("--temporal-port", type=int, default=int(env("TEMPORAL_PORT", 7233)))
    up.add_argument("--temporal-ui-port", type=int, default=int(env("TEMPORAL_UI_PORT", 8233)))
    up.add_argument("--livekit-port", type=int, default=int(env("LIVEKIT_EMULATOR_PORT", 7880)))
    up.add_argument("--s3-port", type=int, default=int(env("S3_PORT", 9000)))
    up.add_argument("--postgres-port", type=int, default=int(env("POSTGRES_PORT", 5433)))
    up.add_argument("--infra-only", action="store_true",
                    help="only Temporal, PostgreSQL, S3 and the LiveKit emulator")  # fmt: skip
    up.add_argument("--no-agent", action="store_true", help="never start the voice agent")
    up.add_argument("--no-standin", action="store_true",
                    help="without the agent, leave calls silent (no scripted conversation)")  # fmt: skip
    sub.add_parser("env", help="print the path of the settings file the processes read")
    return p.parse_args(argv)


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                k, _, v = line.partition("=")
                values[k.strip()] = v.strip()
    return values


def choose_settings(ports: Ports) -> dict[str, str]:
    """Settings for every process; generated secrets are kept across restarts (same file)."""
    old = read_env_file(ENV_FILE)
    keep = lambda name, make: old.get(name) or make()  # noqa: E731
    admin = keep("DEVSTACK_ADMIN_TOKEN", lambda: "adm_" + secrets.token_urlsafe(24))
    return {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal}",
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": "callcenter",
        "DATABASE_URL": postgres_dsn(ports.postgres),
        "MINIO_ENDPOINT": f"127.0.0.1:{ports.s3}",
        "MINIO_ACCESS_KEY": keep("MINIO_ACCESS_KEY", lambda: "devstack"),
        "MINIO_SECRET_KEY": keep("MINIO_SECRET_KEY", lambda: secrets.token_urlsafe(24)),
        "MINIO_SECURE": "false",
        "RECORDINGS_BUCKET": "recordings",
        "LIVEKIT_URL": f"http://127.0.0.1:{ports.livekit}",
        "LIVEKIT_API_KEY": keep("LIVEKIT_API_KEY", lambda: "devkey"),
        "LIVEKIT_API_SECRET": keep("LIVEKIT_API_SECRET", lambda: secrets.token_urlsafe(32)),
        "LIVEKIT_EMULATOR_PORT": str(ports.livekit),
        "LIVEKIT_WEBHOOK_URL": f"http://127.0.0.1:{ports.api}/webhooks/livekit",
        # recordings outlive an emulator restart, so a retried download still finds them
        "LIVEKIT_EMULATOR_RECORDINGS_DIR": str(STATE / "recordings"),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(ports.api),
        "API_URL": f"http://127.0.0.1:{ports.api}",
        "CODEC_CORS_ORIGINS": f"http://127.0.0.1:{ports.temporal_ui},http://localhost:{ports.temporal_ui}",
        "DEVSTACK_ADMIN_TOKEN": admin,
        "API_TOKENS": f"{admin}:admin",
        "PAYLOAD_KEYS": keep(
            "PAYLOAD_KEYS", lambda: "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode()
        ),
    }


def write_env_file(values: dict[str, str]) -> None:
    STATE.mkdir(exist_ok=True)
    (STATE / ".gitignore").write_text("*\n")
    # Keys the developer set by hand (e.g. DEEPGRAM_API_KEY) survive the rewrite.
    extra = {k: v for k, v in read_env_file(ENV_FILE).items() if k not in values}
    body = "# written by `python -m devstack up`; every process of the product reads it\n"
    body += "".join(f"{k}={v}\n" for k, v in {**values, **extra}.items())
    ENV_FILE.write_text(body)
    ENV_FILE.chmod(0o600)


def product_processes(
    env: dict[str, str], ports: Ports, logs: Path, agent: bool, standin: bool
) -> list[ManagedProcess]:
    """The product's own processes that exist in this checkout."""
    py = sys.executable
    procs: list[ManagedProcess] = []
    if (ROOT / "devstack" / "livekit" / "__main__.py").exists():
        procs.append(ManagedProcess("livekit-emulator", [py, "-m", "devstack.livekit"],
                                    logs / "livekit.log", ports=[ports.livekit], env=env, cwd=ROOT))  # fmt: skip
    if (ROOT / "worker.py").exists():
        procs.append(ManagedProcess("worker", [py, "worker.py"], logs / "worker.log", env=env,
                                    cwd=ROOT, ready=_started))  # fmt: skip
    procs.append(ManagedProcess("api", [py, "-m", "api"], logs / "api.log", ports=[ports.api],
                                env=env, cwd=ROOT))  # fmt: skip
    if agent and (ROOT / "agent" / "__main__.py").exists():
        procs.append(ManagedProcess("agent", [py, "-m", "agent", "dev"], logs / "agent.log",
                                    env=env, cwd=ROOT, ready=_started))  # fmt: skip
    elif standin:
        procs.append(ManagedProcess("standin", [py, "-m", "devstack.standin"], logs / "standin.log",
                                    env=env, cwd=ROOT, ready=_started))  # fmt: skip
    return procs


async def _started() -> bool:
    await asyncio.sleep(1.0)  # no port to probe: alive after a second counts as started
    return True


def agent_keys_present(env: dict[str, str]) -> bool:
    merged = {**os.environ, **env}
    return all(merged.get(k) for k in ("DEEPGRAM_API_KEY", "OPENAI_API_KEY", "CARTESIA_API_KEY"))


def print_table(rows: list[tuple[str, str, str]]) -> None:
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    line = f"+-{'-' * w1}-+-{'-' * w2}-+"
    print(line)
    for a, b, c in rows:
        print(f"| {a.ljust(w1)} | {b.ljust(w2)} |  {c}")
    print(line, flush=True)


async def up(args: argparse.Namespace) -> int:
    ports = Ports(args.api_port, args.temporal_port, args.temporal_ui_port, args.livekit_port,
                  args.s3_port, args.postgres_port)  # fmt: skip
    logs = STATE / "logs"
    values = choose_settings(ports)
    write_env_file(values)
    env = {**read_env_file(ENV_FILE), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    running: list[ManagedProcess] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def start(proc: ManagedProcess) -> None:
        print(f"starting {proc.name} ...", flush=True)
        await proc.start()
        running.append(proc)

    code = 0
    try:
        STATE.mkdir(exist_ok=True)
        ui_inner = free_port()  # the UI itself; ui_proxy serves it on ports.temporal_ui
        await start(
            temporal_dev_server(
                STATE,
                ports.temporal,
                ui_inner,
                codec_endpoint=values["API_URL"] + "/codec",
            )
        )
        await start(ui_proxy(ports.temporal_ui, ui_inner, logs, env))
        await start(postgres_server(STATE / "pgdata", ports.postgres, log_dir=logs))
        from db.migrate import migrate

        applied = await migrate(values["DATABASE_URL"])
        print(f"database migrated: {', '.join(applied) or 'up to date'}", flush=True)
        await start(s3_server(logs, ports.s3))
        ensure_bucket(values["MINIO_ENDPOINT"], values["MINIO_ACCESS_KEY"],
                      values["MINIO_SECRET_KEY"], values["RECORDINGS_BUCKET"])  # fmt: skip
        if not args.infra_only:
            want_agent = not args.no_agent and agent_keys_present(env)
            for proc in product_processes(env, ports, logs, want_agent, not args.no_standin):
                await start(proc)
        rows = [
            ("Dashboard", f"http://127.0.0.1:{ports.api}/dashboard", "supervisor view"),
            ("Widget", f"http://127.0.0.1:{ports.api}/", "customer 'Call' button"),
            ("API", f"http://127.0.0.1:{ports.api}", "/healthz /readyz /docs /metrics"),
            ("Temporal UI", f"http://127.0.0.1:{ports.temporal_ui}", "every call is a workflow"),
            (
                "Temporal",
                f"127.0.0.1:{ports.temporal}",
                "gRPC, namespace default, queue callcenter",
            ),
            ("LiveKit emu", f"http://127.0.0.1:{ports.livekit}", "Twirp API + /_emulator/"),
            ("S3", f"http://127.0.0.1:{ports.s3}", "bucket recordings (moto)"),
            ("PostgreSQL", values["DATABASE_URL"], "data in .devstack/pgdata"),
            ("Settings", str(ENV_FILE), "read by every process"),
            ("Logs", str(logs), "one file per process"),
        ]
        print_table(rows)
        print(f"admin token: see DEVSTACK_ADMIN_TOKEN in {ENV_FILE}", flush=True)
        if not args.infra_only and not agent_keys_present(env):
            print("agent: not started (DEEPGRAM_API_KEY, OPENAI_API_KEY, CARTESIA_API_KEY unset); "
                  "the LiveKit emulator joins a stand-in agent to each call"
                  + ("" if args.no_standin else " and devstack.standin scripts its conversation"),
                  flush=True)  # fmt: skip
        print("running; Ctrl-C stops everything", flush=True)
        while not stop.is_set():
            dead = [p for p in running if not p.running]
            if dead:
                for p in dead:
                    print(f"\n{p.name} died (exit {p.proc.returncode if p.proc else '?'}); "
                          f"last lines of {p.log_path}:\n{p.tail()}", file=sys.stderr)  # fmt: skip
                code = 1
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
    except ServiceError as exc:
        print(f"\ndevstack: {exc}", file=sys.stderr)
        code = 1
    finally:
        print("stopping ...", flush=True)
        for proc in reversed(running):
            await proc.stop()
            print(f"  stopped {proc.name}", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "env":
        print(ENV_FILE)
        return 0
    return asyncio.run(up(args))


__all__ = ["main", "wait_port"]
