"""devstack's stand-in for the business's CRM: receives the call center's webhooks
(`call.ended`, `call.analyzed`), checks each as the Standard Webhooks spec says a receiver must,
and logs one line per message. `python -m devstack.webhooks` (devstack up starts it and points
`ANALYSIS_WEBHOOK_URL` at it); `.devstack/logs/webhooks.log` shows what a CRM would get.

The check (spec, "Verifying webhooks"): the signature is base64 HMAC-SHA256 under the secret
(`whsec_` + base64) of `{webhook-id}.{webhook-timestamp}.{body}`, any of the space-separated
`v1,<sig>` entries may match, compared in constant time; a timestamp more than five minutes
from now is refused (replays). A refused message is 401, which the sender retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping

from aiohttp import web

from core.log import get_logger, setup_logging

log = get_logger("devstack.webhooks")
TOLERANCE_S = 5 * 60


def verified(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """Whether a message is signed by `secret` and fresh (Standard Webhooks)."""
    msg_id = headers.get("webhook-id")
    stamp, signatures = headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (msg_id and stamp and signatures and stamp.isdigit()):
        return False
    if abs(now - int(stamp)) > TOLERANCE_S:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), base64.b64encode(expected)):
            return True
    return False


def receiver(secret: str) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not verified(secret, request.headers, body, time.time()):
            log.warning("webhook_refused", msg_id=request.headers.get("webhook-id", ""))
            return web.json_response({"error": "signature or timestamp refused"}, status=401)
        payload = json.loads(body)
        data = payload.get("data") or {}
        analysis = data.get("analysis") or {}
        log.info("webhook_received", msg_id=request.headers["webhook-id"], type=payload.get("type"),
                 call_id=data.get("call_id"), outcome=analysis.get("outcome"))  # fmt: skip
        return web.json_response({"received": request.headers["webhook-id"]})

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    return app


def main() -> None:
    setup_logging()
    from devstack.up import webhooks_port

    port = webhooks_port(os.environ["ANALYSIS_WEBHOOK_URL"])
    web.run_app(receiver(os.environ["ANALYSIS_WEBHOOK_SECRET"]), host="127.0.0.1", port=port,
                print=None)  # fmt: skip


if __name__ == "__main__":
    main()
