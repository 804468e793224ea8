"""What the API knows about calls, apart from how it serves HTTP.

Here: reading the call tables (`store`), the live fan-out from PostgreSQL to WebSockets
(`fanout`), LiveKit webhook -> workflow signal (`webhook_mapping`), the post-call report
(`report`), admission of new calls (`admission`), what the API asks of Temporal
(`workflows_client`) and of a call's LiveKit room (`livekit_room`). The plumbing (auth, errors,
validation, docs, metrics, rate limit, tracing, connections) stays in `api/`; the routes in
`api/routes/` join the two. Nothing here imports a route.
"""
