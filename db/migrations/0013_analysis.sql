-- After the call: its analysis (workflows/analysis.py) and the webhooks that deliver it to the
-- business's systems. Both are keyed by the call (an erasure deletes every row with a call_id).

CREATE TABLE call_analyses (
    call_id      text PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('done', 'failed')),
    method       text NOT NULL CHECK (method IN ('llm', 'local')),
    outcome      text,
    sentiment    text,
    score        real,                        -- share of judged scorecard items that passed
    document     jsonb,                       -- the whole analysis (null when it failed)
    error        text,                        -- why it failed (no transcript text)
    runs         int NOT NULL DEFAULT 1,      -- 1, then one more per ops re-run
    analyzed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_analyses_outcome_idx ON call_analyses (outcome, analyzed_at DESC);

-- One row per webhook message: its id is the Standard Webhooks `webhook-id`, the same on
-- every attempt, so a receiver can drop a message it already has.
CREATE TABLE webhook_deliveries (
    id               text PRIMARY KEY,
    call_id          text NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    attempts         int NOT NULL DEFAULT 0,
    last_status      int,                     -- the receiver's HTTP status (null: no answer)
    last_error       text,
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_call_idx ON webhook_deliveries (call_id, created_at);
