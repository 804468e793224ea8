"""The Temporal Web UI of devstack: read-only, with the codec's "include credentials" on.

The `temporal` CLI's dev server configures its embedded UI with the codec endpoint alone
(temporalio/cli internal/devserver/server.go builds `Codec{Endpoint: ...}` and nothing else), so
the UI never sends cookies to the codec and every write action (terminate, cancel, signal,
reset, start, batch, schedules) is open to whoever views it. ui-server itself has both settings
(`codec.includeCredentials` and `disableWriteActions`, served to the browser by
`GET /api/v1/settings`); this reverse proxy sits where the UI is expected (:8233), answers the
settings with both set, and refuses what ui-server's DisableWriteMiddleware refuses with
`disableWriteActions` on: every request but GET (and HEAD, OPTIONS), except a workflow query's
POST, is 405 and never reaches the UI server. Everything else passes through unchanged.

The UI server itself listens on another loopback port, and the dev server's gRPC and HTTP
ports have no authentication (docs/security.md): devstack is one person's machine.

Run: `python -m devstack.ui_proxy --port 8233 --upstream http://127.0.0.1:<ui port>`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import aiohttp
from aiohttp import web

from core.log import get_logger, setup_logging
from devstack.services import ManagedProcess

log = get_logger("devstack.ui_proxy")
SETTINGS_PATH = "/api/v1/settings"
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "content-length", "content-encoding"}  # fmt: skip


# A workflow query, the one POST a read-only UI still sends (stack traces, `get_state`):
# /api/v1/namespaces/{ns}/workflows/{id}/query/{type}, segments as sent (still %-encoded).
_QUERY = re.compile(r"^/api/v1/namespaces/[^/]+/workflows/[^/]+/query/[^/]+$")
_READS = {"GET", "HEAD", "OPTIONS"}


def with_credentials(settings: dict) -> dict:
    """The UI's settings with the codec's includeCredentials on (when a codec is configured)."""
    codec = settings.get("Codec")
    if isinstance(codec, dict) and codec.get("Endpoint"):
        settings = {**settings, "Codec": {**codec, "IncludeCredentials": True}}
    return settings


def read_only(settings: dict) -> dict:
    """The UI's settings with its write actions off (it greys out every button that writes)."""
    return {**settings, "DisableWriteActions": True}


def write_refused(method: str, raw_path: str) -> bool:
    """True for a request the read-only UI must not pass on: anything but a read or a query."""
    if method in _READS:
        return False
    return not (method == "POST" and _QUERY.match(raw_path.split("?", 1)[0]))


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def on_startup(app: web.Application) -> None:
        app["http"] = aiohttp.ClientSession(auto_decompress=True)

    async def on_cleanup(app: web.Application) -> None:
        await app["http"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        if write_refused(request.method, request.raw_path):
            log.warning("temporal_ui_write_refused", method=request.method,
                        path=request.raw_path.split("?", 1)[0][:200])  # fmt: skip
            return web.json_response(
                {"message": "Method Not Allowed: the Temporal Web UI is read-only "
                            "(write actions are disabled); act on calls through the API"},
                status=405, headers={"Allow": "GET, HEAD, OPTIONS"},
            )  # fmt: skip
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["Accept-Encoding"] = "identity"
        body = await request.read()
        async with app["http"].request(
            request.method,
            upstream + request.raw_path,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
            if request.path == SETTINGS_PATH and up.status == 200:
                settings = read_only(with_credentials(json.loads(await up.read())))
                return web.json_response(settings, status=200, headers={
                    k: v for k, v in out_headers.items() if k.lower() != "content-type"})  # fmt: skip
            response = web.StreamResponse(status=up.status, headers=out_headers)
            await response.prepare(request)
            async for chunk in up.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response

    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def ui_proxy(
    port: int, upstream_port: int, log_dir: Path, env: dict[str, str] | None = None
) -> ManagedProcess:
    """The proxy as a devstack process on `port`, in front of the UI on `upstream_port`."""
    import sys

    return ManagedProcess(
        "temporal-ui",
        [
            sys.executable,
            "-m",
            "devstack.ui_proxy",
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
        ],  # fmt: skip
        log_dir / "temporal-ui.log",
        ports=[port],
        env=env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8233)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    setup_logging("INFO")
    log.info("temporal_ui_proxy", port=args.port, upstream=args.upstream)
    # The UI long-polls history: on SIGTERM, drop those requests instead of waiting them out.
    web.run_app(make_app(args.upstream.rstrip("/")), host=args.host, port=args.port, print=None,
                shutdown_timeout=1.0)  # fmt: skip


if __name__ == "__main__":
    main()
