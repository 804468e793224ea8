"""One blueprint per resource."""

from api.routes import calls, codec, customers, erasure, live, ops, recordings, report, webhooks

BLUEPRINTS = [
    customers.bp,
    calls.bp,
    erasure.bp,
    recordings.bp,
    report.bp,
    webhooks.bp,
    live.bp,
    live.internal,
    codec.bp,
    ops.bp,
]
