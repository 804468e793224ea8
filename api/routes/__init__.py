"""One blueprint per resource."""

from api.routes import (
    agent,
    analysis,
    calls,
    codec,
    customers,
    desk,
    erasure,
    failed_recordings,
    live,
    ops,
    phone,
    recordings,
    report,
    session,
    webhooks,
)

BLUEPRINTS = [
    customers.bp,
    calls.bp,
    phone.bp,
    erasure.bp,
    failed_recordings.bp,
    recordings.bp,
    report.bp,
    analysis.bp,
    webhooks.bp,
    live.bp,
    agent.bp,
    codec.bp,
    session.bp,
    ops.bp,
    desk.bp,
    desk.handoff_bp,
    desk.ws_bp,
]
