"""The emulator's HTTP server: Twirp under /twirp/, the control API under /_emulator/."""

from __future__ import annotations

import inspect
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from core.log import get_logger

from .auth import JoinRefused, TokenError, bearer_grants, join_grants
from .config import EmulatorConfig
from .control import EMULATOR, control_middleware, routes
from .emulator import Emulator
from .services import HANDLERS
from .sip_control import sip_routes
from .twirp import (
    PREFIX,
    TwirpError,
    content_type_of,
    decode_request,
    encode_response,
    parse_route,
)

log = get_logger("devstack.livekit")


async def twirp_handler(request: web.Request) -> web.Response:
    """One Twirp call, in livekit-server's order: auth middleware, route, decode, method."""
    emu = request.app[EMULATOR]
    path = request.path
    method_name = path.rsplit("/", 1)[-1]
    try:
        fault = emu.faults.take("twirp_unavailable", method=method_name)
        if fault:
            log.warning("twirp_unavailable_by_fault", method=method_name, mode=fault.params["mode"])
            if fault.params["mode"] == "drop" and request.transport is not None:
                request.transport.abort()  # the client reads a dropped connection, no answer
                return web.Response(status=503)  # never sent
            raise TwirpError("unavailable", "service unavailable (injected fault)",
                             status=int(fault.params["status"]))  # fmt: skip
        try:
            grants = bearer_grants(
                request.headers.get("Authorization"), emu.config.api_key, emu.config.api_secret
            )
        except TokenError as e:
            raise TwirpError("unauthenticated", str(e)) from None
        if request.method != "POST":
            raise TwirpError(
                "bad_route",
                f'unsupported method "{request.method}" (only POST is allowed)',
                {"twirp_invalid_route": f"{request.method} {path}"},
            )
        key, method = parse_route(path)
        ctype = content_type_of(request, path)
        req = decode_request(method, ctype, await request.read())
        handler = HANDLERS.get(key)
        if handler is None:
            raise TwirpError("unimplemented", f"{key} is not emulated")
        result = handler(emu, req, grants)
        if inspect.isawaitable(result):  # a SIP call waits for the phone
            result = await result
        return encode_response(result, ctype)
    except TwirpError as e:
        if e.code not in ("not_found", "failed_precondition"):
            log.info("twirp_error", method=method_name, code=e.code, message=e.msg)
        return e.response()
    except Exception:  # an emulator bug: still answer in Twirp's shape, and log it loudly
        log.exception("twirp_internal_error", method=method_name)
        return TwirpError("internal", "internal error in the LiveKit emulator").response()


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def rtc_validate(request: web.Request) -> web.Response:
    """livekit-server's `/rtc/validate`, which client SDKs call when a connection fails: the
    token (`Authorization: Bearer`, else `access_token`) checked as `/rtc` checks it; 200
    `success`, else the status with the reason in plain text. No media: nobody joins."""
    emu = request.app[EMULATOR]
    header = request.headers.get("Authorization", "")
    headers = {"Access-Control-Allow-Origin": "*"}
    if header and not header.startswith("Bearer "):
        return web.Response(status=401, text="invalid authorization header", headers=headers)
    token = header.removeprefix("Bearer ") or request.query.get("access_token", "")
    if not token:
        return web.Response(status=401, text="permissions denied", headers=headers)
    try:
        join_grants(token, emu.config.api_key, emu.config.api_secret, request.query.get("room", ""))
    except JoinRefused as e:
        return web.Response(status=e.status, text=str(e), headers=headers)
    return web.Response(text="success", headers=headers)


def build_app(emu: Emulator) -> web.Application:
    app = web.Application(middlewares=[control_middleware], client_max_size=16 * 1024 * 1024)
    app[EMULATOR] = emu
    app.router.add_get("/", health)
    app.router.add_get("/rtc/validate", rtc_validate)
    app.router.add_route("*", PREFIX + "{tail:.*}", twirp_handler)
    app.router.add_routes(routes)
    app.router.add_routes(sip_routes)
    return app


@dataclass
class RunningEmulator:
    """A started emulator. `url` is what LIVEKIT_URL should be; `control_url` ends in /_emulator."""

    config: EmulatorConfig
    emulator: Emulator
    url: str
    port: int
    _runner: web.AppRunner
    _tmpdir: Path | None

    @property
    def control_url(self) -> str:
        return f"{self.url}/_emulator"

    async def stop(self) -> None:
        """Stop serving, cancel timers and encodes, flush webhooks, remove a temporary dir."""
        await self._runner.cleanup()
        await self.emulator.stop()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        log.info("livekit_emulator_stopped", url=self.url)


async def start_emulator(config: EmulatorConfig) -> RunningEmulator:
    """Start the emulator on `config.host:config.port` (0 = a free port) in this event loop.

    Raises OSError when the port is taken. Call `await handle.stop()` to end it; state is in
    memory, so stopping ends every room.
    """
    tmpdir = None
    recordings = config.recordings_path()
    if recordings is None:
        tmpdir = recordings = Path(tempfile.mkdtemp(prefix="livekit-emulator-"))
    recordings.mkdir(parents=True, exist_ok=True)
    emu = Emulator(config, recordings)
    await emu.start()
    runner = web.AppRunner(
        build_app(emu), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        await emu.stop()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    port = int(runner.addresses[0][1])
    emu.base_url = config.base_url(port)
    bound = f"http://{'127.0.0.1' if config.host in ('', '0.0.0.0') else config.host}:{port}"
    log.info("livekit_emulator_listening", url=bound, webhook_url=config.webhook_url or None,
             auto_agent=config.auto_agent, recordings=str(recordings))  # fmt: skip
    return RunningEmulator(config, emu, bound, port, runner, tmpdir)
