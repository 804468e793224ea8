"""The web build (`api/static/`, written by `web/`): widget at `/`, dashboard at `/dashboard`.

Served only if the build is there; the API works without it.
"""

from __future__ import annotations

from pathlib import Path

from sanic import Request, Sanic
from sanic.response import HTTPResponse, file
from sanic_ext import openapi

from core.log import get_logger

log = get_logger("api.static")

PAGES = {"/": "index.html", "/dashboard": "dashboard.html"}


def add_static(app: Sanic, directory: Path) -> None:
    if not directory.is_dir():
        log.info("static_not_built", directory=str(directory))
        return
    for url, name in PAGES.items():
        page = _page(directory, name)
        if page is None:
            continue

        async def serve(request: Request, _page: Path = page) -> HTTPResponse:
            return await file(_page, mime_type="text/html; charset=utf-8")

        openapi.exclude()(serve)
        app.add_route(serve, url, methods=["GET"], name=f"page_{name.split('.')[0]}")
    app.static("/static", directory, name="static_files")


def _page(directory: Path, name: str) -> Path | None:
    """`dashboard.html` or `dashboard/index.html`, whichever the build wrote."""
    for candidate in (directory / name, directory / name.removesuffix(".html") / "index.html"):
        if candidate.is_file():
            return candidate
    return None
