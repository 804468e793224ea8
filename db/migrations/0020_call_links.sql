-- Which callback placed a call, and which call asked for it (issue 25): the callback's attempt
-- `call_id` rings the customer back on behalf of `origin_call_id` (the call where they asked;
-- '' for a callback scheduled outside a call). Written by
-- `start_callback_call` before the attempt's call starts, so the call's detail, its report
-- and the agent's opening line can find the earlier call. Ids only, no customer data; erasing
-- the callback call deletes its row (erasure clears every table with a `call_id`).
CREATE TABLE call_links (
    call_id        text PRIMARY KEY,
    origin_call_id text NOT NULL DEFAULT '',
    callback_id    text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_links_origin_idx ON call_links (origin_call_id) WHERE origin_call_id <> '';

-- Callbacks that dialled before this table existed: their attempts name their calls.
INSERT INTO call_links (call_id, origin_call_id, callback_id, created_at)
SELECT a->>'call_id', c.origin_call_id, c.callback_id, to_timestamp((a->>'started_at')::float8)
FROM callbacks c, jsonb_array_elements(c.attempts) a
WHERE coalesce(a->>'call_id', '') <> ''
ON CONFLICT (call_id) DO NOTHING;
