"""One blueprint per resource."""

from api.routes import (
    agent,
    analysis,
    callbacks,
    calls,
    codec,
    customers,
    erasure,
    erasures,
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
    callbacks.bp,
    erasure.bp,
    erasures.bp,
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
]
