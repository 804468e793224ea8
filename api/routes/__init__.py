"""One blueprint per resource."""

from api.routes import calls, codec, customers, erasure, live, ops, recordings, webhooks

BLUEPRINTS = [
    customers.bp,
    calls.bp,
    erasure.bp,
    recordings.bp,
    webhooks.bp,
    live.bp,
    live.internal,
    codec.bp,
    ops.bp,
]
