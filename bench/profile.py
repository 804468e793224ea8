"""Where a benchmark's time goes: py-spy on the Python processes, the Temporal server's own
metrics, and CPU per thread, over one phase of a benchmark, summarised as short text.

    async with Profile(out_dir, "product", {"worker-1": pid, "api": pid}, metrics_url) as prof:
        ...  # the phase to profile
    print(prof.summary)  # also written to <out_dir>/<label>.txt

- Python processes: `py-spy record --nonblocking --format raw` (collapsed stacks, not an svg;
  non-blocking so the profiled process is not paused, at the price of a rare torn stack). The
  summary lists the top functions by own samples and by samples under them, and a breakdown of
  the samples by component (workflow code, the SDK, asyncpg, the codec, logging ...). py-spy sees
  Python threads only: the Temporal core's Rust threads show in the per-thread CPU instead.
- The Temporal dev server (Go: py-spy can't): the delta of its Prometheus counters,
  `persistence_latency` (time spent in SQLite per operation) and `service_latency` (per RPC).
- CPU per thread of each process (from /proc, via psutil), so a process that saturates one
  core (the GIL) shows even when the machine has room.

Needs py-spy (a dev dependency) and root or ptrace rights over the processes; without them the
py-spy part says why and the rest still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

import aiohttp
import psutil

PY_SPY = Path(sys.executable).parent / "py-spy"

# Component of a sampled stack: the first of these (in this order) that any of its frames
# file paths matches: asyncpg's own time inside an activity counts as asyncpg, not activities.
COMPONENTS: list[tuple[str, str]] = [
    ("logging (structlog / stdlib)", r"structlog|/logging/|core/log\.py"),
    ("payload codec (encryption)", r"core/codec|cryptography"),
    ("protobuf / JSON conversion", r"google/protobuf|temporalio/converter|/json/|pydantic"),
    ("asyncpg (PostgreSQL)", r"asyncpg"),
    ("workflow sandbox (restrictions, imports)", r"workflow_sandbox/(_restrictions|_importer)"),
    ("workflow code", r"/workflows/"),
    ("SDK workflow instance", r"temporalio/worker/_workflow_instance"),
    ("SDK worker (activations, activities)", r"temporalio/worker/"),
    ("SDK client / bridge calls", r"temporalio/(client|bridge|service)"),
    ("activities", r"/activities/"),
    ("Sanic / HTTP / WebSocket", r"sanic|websockets|aiohttp|httptools"),
    ("API code", r"/api/"),
    ("agent code (SignalQueue, InterimPoster)", r"/agent/"),
    ("benchmark driver", r"/bench/"),
    ("asyncio event loop", r"asyncio/|uvloop"),
]

# Leaf frames that are waits, not work (py-spy's idle detection lets some through): left out.
IDLE_LEAVES = re.compile(r"^(\w+Selector\.select|_worker|Condition\.wait|wait) \((selectors|concurrent/"
                         r"futures/thread|threading)\.py")  # fmt: skip
# Frames every stack goes through (the interpreter, the event loop): left out of the
# cumulative list, where they would only say 100 %.
PLUMBING = re.compile(r"runpy|asyncio/(runners|base_events|events)\.py|threading\.py|^<module>|"
                      r"concurrent/futures/thread\.py|contextvars")  # fmt: skip

# RPCs that wait for something to happen (task polls, history and user-data long polls).
LONG_POLLS = frozenset({"GetTaskQueueUserData", "GetWorkflowExecutionHistory"})

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame(raw: str) -> tuple[str, str]:
    m = _FRAME.match(raw.strip())
    if not m:
        return raw.strip(), ""
    return m["func"], m["file"]


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def summarise_stacks(text: str, top: int = 15) -> str:
    """Top functions (own and cumulative samples) and samples per component, from py-spy's
    collapsed stacks (`frame;frame;... count` per line)."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    component: Counter[str] = Counter()
    total = idle = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        names = [f"{func} ({_short(file)})" for func, file in frames]
        if IDLE_LEAVES.match(names[-1]):
            idle += n
            continue
        total += n
        own[names[-1]] += n
        for name in set(names):
            if not PLUMBING.search(name):
                under[name] += n
        files = [file for _, file in frames]
        hit = next((c for c, rx in COMPONENTS if any(re.search(rx, f) for f in files)), "other")
        component[hit] += n
    if not total:
        return "  no samples (idle, or py-spy could not attach)\n"
    pct = lambda n: f"{100 * n / total:5.1f} %"  # noqa: E731
    out = [f"  {total} samples while on CPU ({idle} more in waits left out)",
           "  by component:"]  # fmt: skip
    out += [f"    {pct(n)}  {c}" for c, n in component.most_common()]
    out.append("  top functions, own samples:")
    out += [f"    {pct(n)}  {f}" for f, n in own.most_common(top)]
    out.append("  top functions, samples under them:")
    out += [f"    {pct(n)}  {f}" for f, n in under.most_common(top)]
    return "\n".join(out) + "\n"


def _metrics(text: str) -> dict[tuple[str, str, str], float]:
    """(family, operation, service) -> value for the families the summary reads."""
    wanted = ("persistence_latency_sum", "persistence_latency_count",
              "service_latency_sum", "service_latency_count")  # fmt: skip
    out: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith(wanted):
            continue
        name, _, rest = line.partition("{")
        labels, _, value = rest.rpartition("} ")
        op = re.search(r'operation="([^"]*)"', labels)
        svc = re.search(r'service_name="([^"]*)"', labels)
        key = (name, op[1] if op else "", svc[1] if svc else "")
        out[key] = out.get(key, 0.0) + float(value)
    return out


def summarise_metrics(
    before: dict[tuple[str, str, str], float],
    after: dict[tuple[str, str, str], float],
    seconds: float,
    top: int = 10,
) -> str:
    """Time the Temporal server spent per persistence operation and per RPC over the phase."""
    out = []
    for family, title in (("persistence_latency", "SQLite (persistence) per operation"),
                          ("service_latency", "RPCs per operation (long polls left out)")):  # fmt: skip
        rows = []
        for (name, op, svc), total in after.items():
            if name != f"{family}_sum" or op in LONG_POLLS or op.startswith("Poll"):
                continue  # long polls wait for work, they do none
            s = total - before.get((name, op, svc), 0.0)
            n = after.get((f"{family}_count", op, svc), 0.0) - before.get(
                (f"{family}_count", op, svc), 0.0
            )
            if n > 0:
                rows.append((s, n, op, svc))
        rows.sort(reverse=True)
        busy = sum(r[0] for r in rows)
        out.append(f"  {title}: {busy:.1f} s of calls in {seconds:.1f} s "
                   f"({busy / max(seconds, 1e-6):.2f} busy on average)")  # fmt: skip
        for s, n, op, svc in rows[:top]:
            out.append(f"    {s:7.2f} s  {n:7.0f} calls  {1000 * s / n:7.1f} ms avg  {op} ({svc})")
    return "\n".join(out) + "\n"


def thread_cpu(proc: psutil.Process) -> dict[int, float]:
    """CPU seconds per thread id."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return {t.id: t.user_time + t.system_time for t in proc.threads()}
    return {}


class Profile:
    """Profiles `pythons` (name -> pid) with py-spy and the Temporal server at `metrics_url`
    (with `temporal` its process, for CPU) while the block runs; `summary` after it."""

    def __init__(
        self,
        out_dir: Path,
        label: str,
        pythons: dict[str, int],
        metrics_url: str | None = None,
        temporal: psutil.Process | None = None,
        rate: int = 50,
    ) -> None:
        self.out_dir, self.label, self.pythons = out_dir, label, pythons
        self.metrics_url, self.temporal, self.rate = metrics_url, temporal, rate
        self.summary = ""
        self._spies: dict[str, asyncio.subprocess.Process] = {}
        self._metrics0: dict[tuple[str, str, str], float] = {}
        self._threads0: dict[str, dict[int, float]] = {}
        self._t0 = 0.0

    def _procs(self) -> dict[str, psutil.Process]:
        procs = {}
        for name, pid in self.pythons.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                procs[name] = psutil.Process(pid)
        if self.temporal is not None:
            procs["temporal server"] = self.temporal
        return procs

    async def _scrape(self) -> dict[tuple[str, str, str], float]:
        if not self.metrics_url:
            return {}
        async with aiohttp.ClientSession() as http, http.get(self.metrics_url) as r:
            return _metrics(await r.text())

    async def __aenter__(self) -> Profile:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._metrics0 = await self._scrape()
        self._threads0 = {n: thread_cpu(p) for n, p in self._procs().items()}
        if PY_SPY.exists() or shutil.which("py-spy"):
            exe = str(PY_SPY) if PY_SPY.exists() else "py-spy"
            for name, pid in self.pythons.items():
                self._spies[name] = await asyncio.create_subprocess_exec(
                    exe, "record", "--pid", str(pid), "--rate", str(self.rate),
                    "--nonblocking", "--format", "raw", "-o", str(self._raw(name)),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
        self._t0 = time.monotonic()
        return self

    def _raw(self, name: str) -> Path:
        return self.out_dir / f"{self.label}-{name}.collapsed.txt"

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        took = time.monotonic() - self._t0
        out = [f"== {self.label}: {took:.1f} s profiled"]
        procs = self._procs()
        for name, proc in procs.items():
            t1 = thread_cpu(proc)
            t0 = self._threads0.get(name, {})
            per = sorted(((t1[t] - t0.get(t, 0.0)) / took * 100 for t in t1), reverse=True)
            busy = [f"{c:.0f}" for c in per if c >= 1][:8]
            out.append(f"-- {name}: CPU {sum(per):.0f} % of a core; busiest threads "
                       f"{', '.join(busy) or '-'} %")  # fmt: skip
        errors = {}
        for name, spy in self._spies.items():
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)
            try:
                _, err = await asyncio.wait_for(spy.communicate(), 60)
            except TimeoutError:
                spy.kill()
                _, err = await spy.communicate()
            errors[name] = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
        for name in self._spies:
            raw = self._raw(name)
            out.append(f"-- {name} (py-spy, {self.rate} Hz):")
            if raw.exists():
                out.append(summarise_stacks(raw.read_text()).rstrip("\n"))
            else:
                out.append(
                    f"  no profile: {' '.join(errors.get(name, [])) or 'py-spy wrote nothing'}"
                )
        if self.metrics_url:
            try:
                after = await self._scrape()
            except aiohttp.ClientError as exc:
                out.append(f"-- temporal server metrics: unavailable ({exc})")
            else:
                out.append("-- temporal server (its Prometheus metrics):")
                out.append(summarise_metrics(self._metrics0, after, took).rstrip("\n"))
        self.summary = "\n".join(out) + "\n"
        (self.out_dir / f"{self.label}.txt").write_text(self.summary)
