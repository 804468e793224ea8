"""Structured logging: one line an event, `event key=value ...`, call id on every call line.

log = get_logger(__name__)
log.info("egress_started", call_id=call_id, egress_id=egress_id)
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

_CONFIGURED = False


def _fmt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or "=" in text or not text) else text


class KV(logging.LoggerAdapter):
    """`log.info("event", k=v)` renders as `event k=v` on one line."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        exc_info = kwargs.pop("exc_info", None)
        fields = " ".join(f"{k}={_fmt(v)}" for k, v in kwargs.items() if v is not None)
        if self.isEnabledFor(level):
            self.logger.log(
                level, f"{msg} {fields}".rstrip(), *args, exc_info=exc_info, stacklevel=2
            )

    def debug(self, msg: object, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        self.log(logging.DEBUG, msg, *args, **kw)

    def info(self, msg: object, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        self.log(logging.INFO, msg, *args, **kw)

    def warning(self, msg: object, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        self.log(logging.WARNING, msg, *args, **kw)

    def error(self, msg: object, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        self.log(logging.ERROR, msg, *args, **kw)

    def exception(self, msg: object, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        kw.setdefault("exc_info", True)
        self.log(logging.ERROR, msg, *args, **kw)


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once per process (level from LOG_LEVEL, default INFO)."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    _CONFIGURED = True


def get_logger(name: str) -> KV:
    return KV(logging.getLogger(name), {})
