"""`python -m devstack up`: the whole call center on one machine, until Ctrl-C.

Starts Temporal's dev server (Web UI, search attributes, state in `.devstack/temporal.sqlite` in
WAL mode, or in memory with `--temporal-in-memory` for benchmarks), PostgreSQL (data in
`.devstack/pgdata`, migrated), an S3 endpoint with the recordings bucket, the LiveKit emulator,
then the worker(s), the API and (when its keys are set) the agent. Every
setting it chose is written to `.devstack/env`, which every process of the product reads.

Supervision is compose's `restart: unless-stopped`: a product process (worker, API, agent,
stand-in) that dies is logged and restarted, after a delay that doubles from 0.5 s up to 30 s
and resets once it has stayed up for 10 s. Only infrastructure (Temporal, PostgreSQL, S3, the
LiveKit emulator) dying stops the stack: every product process depends on it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

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
    webhooks: int = 0  # the stand-in CRM (devstack.webhooks); 0: a free port


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
    up.add_argument("--webhooks-port", type=int, default=int(env("WEBHOOKS_PORT", 0)),
                    help="the stand-in CRM that receives the webhooks (default: a free port)")  # fmt: skip
    up.add_argument("--infra-only", action="store_true",
                    help="only Temporal, PostgreSQL, S3 and the LiveKit emulator")  # fmt: skip
    up.add_argument("--standin-pace", type=float, default=4.0,
                    help="seconds between the stand-in conversation's lines (default 4)")  # fmt: skip
    up.add_argument("--workers", type=int, default=int(env("DEVSTACK_WORKERS", 1)),
                    help="Temporal worker processes on the task queue (default 1)")  # fmt: skip
    up.add_argument("--temporal-in-memory", action="store_true",
                    help="Temporal keeps its state in memory, lost when it stops (benchmarks)")  # fmt: skip
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


DEVSTACK_PHONE_NUMBER = "+15550100000"


async def setup_telephony(env: dict[str, str]) -> str:
    """`ops telephony setup` against the emulator: the trunk number callers dial."""
    from core.livekit import livekit_client
    from core.settings import load_settings
    from ops.telephony import ensure_telephony

    settings = load_settings(_env_file=None, **{k: v for k, v in env.items() if k.isupper()})
    lk = livekit_client(settings)
    try:
        report = await ensure_telephony(lk, settings)
    finally:
        await lk.aclose()
    print(f"telephony: inbound {report['inbound'].get('trunk')}, rule "
          f"{report['inbound'].get('dispatch_rule')}, outbound {report['outbound'].get('trunk')}",
          flush=True)  # fmt: skip
    return settings.SIP_INBOUND_NUMBERS


def choose_settings(ports: Ports) -> dict[str, str]:
    """Settings for every process; generated secrets are kept across restarts (same file)."""
    old = read_env_file(ENV_FILE)
    keep = lambda name, make: old.get(name) or make()  # noqa: E731
    admin = keep("DEVSTACK_ADMIN_TOKEN", lambda: "adm_" + secrets.token_urlsafe(24))
    rep = keep("DEVSTACK_REP_TOKEN", lambda: "rep_" + secrets.token_urlsafe(24))
    return {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal}",
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": "callcenter",
        # The worker polls as a Worker Deployment Version; `up` makes it current once it polls.
        "WORKER_DEPLOYMENT_NAME": "callcenter",
        "WORKER_BUILD_ID": os.environ.get("DEVSTACK_BUILD_ID") or build_id(),
        "DATABASE_URL": postgres_dsn(ports.postgres),
        "MINIO_ENDPOINT": f"127.0.0.1:{ports.s3}",
        "MINIO_ACCESS_KEY": keep("MINIO_ACCESS_KEY", lambda: "devstack"),
        "MINIO_SECRET_KEY": keep("MINIO_SECRET_KEY", lambda: secrets.token_urlsafe(24)),
        "MINIO_SECURE": "false",
        "RECORDINGS_BUCKET": "recordings",
        "EGRESS_BUCKET": "egress",  # the emulator uploads here, as Egress to its S3Upload
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
        # One rep, so the Desk (#/desk) can take the hand-off the stand-in asks for.
        "DEVSTACK_REP_TOKEN": rep,
        # the name is what audit records show
        "API_TOKENS": f"devstack-admin:{admin}:admin,devstack-rep:{rep}:rep:general+sales",
        # The phone line (ops telephony setup runs at start): a number the emulator's phone
        # network calls, a trunk to dial out through, and every number allowed out.
        "SIP_INBOUND_NUMBERS": keep("SIP_INBOUND_NUMBERS", lambda: DEVSTACK_PHONE_NUMBER),
        "SIP_OUTBOUND_ADDRESS": "sip.emulator.invalid",
        "SIP_OUTBOUND_NUMBERS": keep("SIP_OUTBOUND_NUMBERS", lambda: DEVSTACK_PHONE_NUMBER),
        "SIP_OUTBOUND_ALLOWED_PREFIXES": "+",
        "PAYLOAD_KEYS": keep(
            "PAYLOAD_KEYS", lambda: "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode()
        ),
        **analysis_settings(os.environ),
        **webhook_settings(os.environ, ports.webhooks or free_port(), old),
    }


def analysis_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """After each call, an analysis the dashboard shows: the local method (no model, no key)
    unless the developer configured a model or a method themselves; soon after the hang-up."""
    model = any(environ.get(k) for k in ("ANALYSIS_LLM_BASE_URL", "ANALYSIS_LLM_API_KEY"))
    method = environ.get("ANALYSIS_METHOD") or ("auto" if model else "local")
    return {"ANALYSIS_METHOD": method, "ANALYSIS_DELAY_S": environ.get("ANALYSIS_DELAY_S", "2")}


def webhook_settings(
    environ: Mapping[str, str], port: int, old: Mapping[str, str]
) -> dict[str, str]:
    """The webhooks go to devstack's stand-in CRM (devstack.webhooks), signed with a generated
    secret kept across restarts, unless the developer named a receiver of their own."""
    if environ.get("ANALYSIS_WEBHOOK_URL"):
        return {}
    secret = (
        old.get("ANALYSIS_WEBHOOK_SECRET")
        or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    return {"ANALYSIS_WEBHOOK_URL": f"http://127.0.0.1:{port}/webhooks",
            "ANALYSIS_WEBHOOK_SECRET": secret, "DEVSTACK_WEBHOOKS": "1"}  # fmt: skip


def webhooks_port(url: str) -> int:
    return int(urlsplit(url).port or 80)


def build_id() -> str:
    """This checkout's build id: the commit (`-dirty` with uncommitted changes, so that editing
    and restarting keeps one version), or `dev` outside git."""
    import subprocess

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True,
                              check=False, timeout=10)  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return "dev"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


async def promote_worker_version(env: dict[str, str], logs: Path) -> None:
    """Make the worker's version current once it polls (`python -m ops deploy promote`), so new
    calls go to it. On one machine there is nobody else's calls to protect: calls of an
    unversioned worker (a stack from before versioning) are taken over, and a call pinned to
    an earlier build of this checkout waits for that build's worker (docs/deploy.md)."""
    argv = [sys.executable, "-m", "ops", "deploy", "promote", env["WORKER_BUILD_ID"],
            "--wait", "120", "--take-over-unversioned"]  # fmt: skip
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "promote.log", "ab") as log:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=ROOT, stdout=log,
                                                    stderr=log)  # fmt: skip
        if await proc.wait() != 0:
            raise ServiceError(
                f"could not make worker version {env['WORKER_BUILD_ID']} current "
                f"(see {logs / 'promote.log'})"
            )
    print(f"worker version {env['WORKER_BUILD_ID']} is current", flush=True)


def write_env_file(values: dict[str, str]) -> None:
    STATE.mkdir(exist_ok=True)
    (STATE / ".gitignore").write_text("*\n")
    # Keys the developer set by hand (e.g. DEEPGRAM_API_KEY) survive the rewrite.
    extra = {k: v for k, v in read_env_file(ENV_FILE).items() if k not in values}
    body = "# written by `python -m devstack up`; every process of the product reads it\n"
    body += "".join(f"{k}={v}\n" for k, v in {**values, **extra}.items())
    write_private(ENV_FILE, body)


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only from the first byte: the file is
    created 0600 (never written first and chmodded after) and renamed over the old one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash; O_EXCL below must create a fresh file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def emulator_process(env: dict[str, str], ports: Ports, logs: Path) -> ManagedProcess | None:
    """The LiveKit emulator: infrastructure, like livekit-server in compose."""
    if not (ROOT / "devstack" / "livekit" / "__main__.py").exists():
        return None
    return ManagedProcess("livekit-emulator", [sys.executable, "-m", "devstack.livekit"],
                          logs / "livekit.log", ports=[ports.livekit], env=env, cwd=ROOT)  # fmt: skip


def product_processes(
    env: dict[str, str],
    ports: Ports,
    logs: Path,
    agent: bool,
    standin: bool,
    workers: int = 1,
    standin_pace_s: float = 4.0,
) -> list[ManagedProcess]:
    """The product's own processes that exist in this checkout (supervised: restarted on death)."""
    py = sys.executable
    procs: list[ManagedProcess] = []
    if (ROOT / "worker.py").exists():
        for n in range(1, workers + 1):
            name = "worker" if workers == 1 else f"worker-{n}"
            procs.append(ManagedProcess(name, [py, "worker.py"], logs / f"{name}.log", env=env,
                                        cwd=ROOT, ready=_started))  # fmt: skip
    procs.append(ManagedProcess("api", [py, "-m", "api"], logs / "api.log", ports=[ports.api],
                                env=env, cwd=ROOT))  # fmt: skip
    if env.get("DEVSTACK_WEBHOOKS"):  # the stand-in CRM, when devstack chose the receiver
        port = webhooks_port(env["ANALYSIS_WEBHOOK_URL"])
        procs.append(ManagedProcess("webhooks", [py, "-m", "devstack.webhooks"],
                                    logs / "webhooks.log", ports=[port], env=env, cwd=ROOT))  # fmt: skip
    if agent and (ROOT / "agent" / "__main__.py").exists():
        procs.append(ManagedProcess("agent", [py, "-m", "agent", "dev"], logs / "agent.log",
                                    env=env, cwd=ROOT, ready=_started))  # fmt: skip
    elif standin:
        argv = [py, "-m", "devstack.standin", "--pace", str(standin_pace_s)]
        procs.append(ManagedProcess("standin", argv, logs / "standin.log", env=env, cwd=ROOT,
                                    ready=_started))  # fmt: skip
    return procs


# compose/dockerd: the delay doubles per crash and resets once the process has stayed up a while.
RESTART_FIRST_DELAY_S = 0.5
RESTART_MAX_DELAY_S = 30.0
RESTART_RESET_AFTER_S = 10.0


@dataclass
class Supervised:
    """A product process and its restart state."""

    proc: ManagedProcess
    delay_s: float = RESTART_FIRST_DELAY_S
    started_at: float = field(default_factory=time.monotonic)
    restart_at: float | None = None  # set while it is dead and waiting for its next start
    restarts: int = 0

    def check(self, now: float) -> str | None:
        """Notices a death and schedules the restart; a message to log, or None."""
        if self.restart_at is not None or self.proc.running:
            return None
        code = self.proc.proc.returncode if self.proc.proc else "?"
        if now - self.started_at >= RESTART_RESET_AFTER_S:
            self.delay_s = RESTART_FIRST_DELAY_S
        self.restart_at = now + self.delay_s
        msg = (f"{self.proc.name} died (exit {code}); restarting in {self.delay_s:.1f} s "
               f"(restart {self.restarts + 1}); last lines of {self.proc.log_path}:\n"
               f"{self.proc.tail(5)}")  # fmt: skip
        self.delay_s = min(self.delay_s * 2, RESTART_MAX_DELAY_S)
        return msg

    async def restart_if_due(self, now: float) -> str | None:
        if self.restart_at is None or now < self.restart_at:
            return None
        self.restart_at = None
        self.restarts += 1
        self.started_at = time.monotonic()
        await self.proc.stop(timeout=5)  # stragglers of its process group, if any
        try:
            await self.proc.start()
        except ServiceError as exc:
            self.started_at = 0.0  # counts as a crash right away: the delay keeps growing
            return f"{self.proc.name} failed to restart: {exc}"
        return f"{self.proc.name} restarted (pid {self.proc.proc.pid if self.proc.proc else '?'})"


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
    infra: list[ManagedProcess] = []
    supervised: list[Supervised] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def start(proc: ManagedProcess, product: bool = False) -> None:
        print(f"starting {proc.name} ...", flush=True)
        await proc.start()
        running.append(proc)
        if product:
            supervised.append(Supervised(proc))
        else:
            infra.append(proc)

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
                in_memory=args.temporal_in_memory,
            )
        )
        await start(ui_proxy(ports.temporal_ui, ui_inner, logs, env))
        await start(postgres_server(STATE / "pgdata", ports.postgres, log_dir=logs))
        from db.migrate import migrate

        applied = await migrate(values["DATABASE_URL"])
        print(f"database migrated: {', '.join(applied) or 'up to date'}", flush=True)
        await start(s3_server(logs, ports.s3))
        for bucket in (values["RECORDINGS_BUCKET"], values["EGRESS_BUCKET"]):
            ensure_bucket(values["MINIO_ENDPOINT"], values["MINIO_ACCESS_KEY"],
                          values["MINIO_SECRET_KEY"], bucket)  # fmt: skip
        emulator = emulator_process(env, ports, logs)
        phone = ""
        if emulator is not None:
            await start(emulator)
            phone = await setup_telephony(env)
        if not args.infra_only:
            want_agent = not args.no_agent and agent_keys_present(env)
            for proc in product_processes(env, ports, logs, want_agent, not args.no_standin,
                                          workers=max(1, args.workers),
                                          standin_pace_s=args.standin_pace):  # fmt: skip
                await start(proc, product=True)
            if (ROOT / "worker.py").exists():
                await promote_worker_version(env, logs)
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
            *(
                [("Webhooks", values["ANALYSIS_WEBHOOK_URL"], "stand-in CRM: logs/webhooks.log")]
                if values.get("DEVSTACK_WEBHOOKS")
                else []
            ),  # fmt: skip
            ("Phone", phone or "(no emulator)", "SIP_INBOUND_NUMBERS: POST /_emulator/sip/inbound"),
            ("S3", f"http://127.0.0.1:{ports.s3}", "buckets recordings, egress (moto)"),
            ("PostgreSQL", values["DATABASE_URL"], "data in .devstack/pgdata"),
            ("Settings", str(ENV_FILE), "read by every process"),
            ("Logs", str(logs), "one file per process"),
        ]
        print_table(rows)
        print(f"admin token: see DEVSTACK_ADMIN_TOKEN in {ENV_FILE}; a rep's for the Desk: "
              "DEVSTACK_REP_TOKEN", flush=True)  # fmt: skip
        if not args.infra_only and not agent_keys_present(env):
            print("agent: not started (DEEPGRAM_API_KEY, OPENAI_API_KEY, CARTESIA_API_KEY unset); "
                  "the LiveKit emulator joins a stand-in agent to each call"
                  + ("" if args.no_standin else " and devstack.standin scripts its conversation"),
                  flush=True)  # fmt: skip
        print("running; Ctrl-C stops everything", flush=True)
        code = await _supervise(infra, supervised, stop)
    except ServiceError as exc:
        print(f"\ndevstack: {exc}", file=sys.stderr)
        code = 1
    finally:
        print("stopping ...", flush=True)
        for proc in reversed(running):
            await proc.stop()
            print(f"  stopped {proc.name}", flush=True)
    return code


async def _supervise(
    infra: list[ManagedProcess], supervised: list[Supervised], stop: asyncio.Event
) -> int:
    """Until Ctrl-C (0) or an infrastructure process dies (1); product processes are restarted."""
    while not stop.is_set():
        dead = [p for p in infra if not p.running]
        if dead:
            for p in dead:
                print(f"\n{p.name} died (exit {p.proc.returncode if p.proc else '?'}); the stack "
                      f"stops; last lines of {p.log_path}:\n{p.tail()}", file=sys.stderr)  # fmt: skip
            return 1
        for s in supervised:
            for msg in (s.check(time.monotonic()), await s.restart_if_due(time.monotonic())):
                if msg:
                    print(f"devstack: {msg}", file=sys.stderr, flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "env":
        print(ENV_FILE)
        return 0
    return asyncio.run(up(args))


__all__ = ["main", "wait_port"]
