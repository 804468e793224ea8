"""Sanic app factory: `create_app(settings)`; `python -m api` runs it.

One blueprint per resource (see `api/routes/`); connections are opened in the server's
listeners and kept on `app.ctx.res`; every error leaves through `api.errors.render_error`.
"""

from __future__ import annotations

import time
from pathlib import Path

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic_ext import openapi

from api.auth import TokenTable
from api.domain.admission import Admission
from api.errors import render_error
from api.metrics import observe_request
from api.oidc import Issuer, SignInClient
from api.ratelimit import RateLimiter
from api.resources import Resources
from api.routes import BLUEPRINTS, desk, live
from api.routes.static import add_static
from api.tracing import end_request_span, start_request_span
from core.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"


def _unique_name(name: str) -> str:
    # Sanic keeps a registry of app names per process; tests build several apps.
    candidate, n = name, 1
    while candidate in Sanic._app_registry:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def create_app(
    settings: Settings, name: str = "callcenter", static_dir: Path | None = None
) -> Sanic:
    """Build the API. Nothing connects until the server starts (see `Resources.open`)."""
    # Logging is configured once per process (core.log); Sanic would add its own handlers.
    app = Sanic(_unique_name(name), configure_logging=False)
    app.config.update(
        {
            "OAS_UI_DEFAULT": "swagger",
            "OAS_URL_PREFIX": "/docs",
            "CORS": False,  # CORS is granted to the Temporal Web UI on /codec only
            "REQUEST_MAX_SIZE": 1_000_000,
            "FALLBACK_ERROR_FORMAT": "json",
            "KEEP_ALIVE_TIMEOUT": 30,
            "WEBSOCKET_PING_INTERVAL": 20,
            "WEBSOCKET_PING_TIMEOUT": 20,
        }
    )
    app.ext.openapi.describe(
        "AI call center API",
        version="1.0.0",
        description=(
            "Customers start calls; supervisors watch and act on them; ops replay recording "
            'pipelines. Errors are `{"error": {"code", "message", "field"?}}` with a 4xx. '
            "Supervisor/ops/admin endpoints need `Authorization: Bearer <token>`."
        ),
    )
    app.ext.openapi.add_security_scheme("bearer", "http", scheme="bearer")

    app.ctx.settings = settings
    app.ctx.tokens = TokenTable(settings.api_token_entries)
    # The organisation's identity provider: the UI's access tokens on /codec, dashboard sign-in.
    app.ctx.oidc_issuer = Issuer(settings) if settings.CODEC_OIDC_ISSUER else None
    app.ctx.sign_in = (
        SignInClient(settings, app.ctx.oidc_issuer)
        if app.ctx.oidc_issuer and settings.DASHBOARD_OIDC_CLIENT_ID
        else None
    )
    app.ctx.rate_limiter = RateLimiter(settings.RATE_LIMIT_PER_MINUTE)
    app.ctx.trusted_proxies = settings.trusted_proxies  # parsed once, read by every customer call
    app.ctx.admission = Admission(
        max_waiting=settings.MAX_WAITING_CALLS,
        max_per_client=settings.MAX_CALLS_PER_CLIENT,
        max_live=settings.MAX_LIVE_AI_CALLS,
        join_timeout_s=settings.CUSTOMER_JOIN_TIMEOUT_S,
        max_call_s=settings.MAX_CALL_DURATION_S,
    )
    app.ctx.res = Resources(settings)

    for bp in BLUEPRINTS:
        app.blueprint(bp)
    openapi.exclude(bp=live.bp)
    openapi.exclude(bp=desk.ws_bp)  # WebSockets are described in api/routes/live.py and docs/api.md
    add_static(app, static_dir or STATIC_DIR)

    app.error_handler.add(Exception, render_error)

    @app.before_server_start
    async def _open(app: Sanic) -> None:
        await app.ctx.res.open()

    @app.after_server_stop
    async def _close(app: Sanic) -> None:
        await app.ctx.res.close()

    @app.on_request
    async def _started(request: Request) -> None:
        request.ctx.started = time.perf_counter()
        start_request_span(request)

    @app.on_response
    async def _measured(request: Request, response: HTTPResponse) -> None:
        observe_request(request, response)
        end_request_span(request, response)

    return app
