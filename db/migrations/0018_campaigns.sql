-- Outbound campaigns (issue 25). `campaign-<id>` decides; `campaigns` is what the API lists
-- (the workflow writes its status and counts at the end, the API asks the workflow while it
-- runs). `campaign_numbers` holds the list in upload order: the workflow reads it a batch at a
-- time and writes each number's outcome; erasure by number deletes its rows.
CREATE TABLE campaigns (
    campaign_id    text PRIMARY KEY,
    name           text NOT NULL,
    timezone       text NOT NULL,
    hours          text NOT NULL,
    max_concurrent int NOT NULL,
    start_at       timestamptz NOT NULL,
    reason         text NOT NULL DEFAULT '',
    total          int NOT NULL,
    status         text NOT NULL DEFAULT 'scheduled' CHECK (status IN
                       ('scheduled', 'running', 'paused', 'completed', 'cancelled')),
    progress       jsonb NOT NULL DEFAULT '{}',
    created_by     text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_numbers (
    campaign_id text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    seq         int NOT NULL,
    phone       text NOT NULL,
    outcome     text NOT NULL DEFAULT '',  -- '' until dialled (or skipped: do_not_call)
    call_id     text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, seq)
);
CREATE INDEX campaign_numbers_phone_idx ON campaign_numbers (phone);
