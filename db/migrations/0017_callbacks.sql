-- Callbacks (issue 25). `callback-<id>` decides; this row is what the API lists and what
-- erasure by number finds. The number is customer data (E.164): the API masks it for everyone
-- but an admin; erasure deletes the row.
CREATE TABLE callbacks (
    callback_id    text PRIMARY KEY,
    phone          text NOT NULL,
    timezone       text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    origin_call_id text NOT NULL DEFAULT '',
    status         text NOT NULL CHECK (status IN
                       ('scheduled', 'dialing', 'completed', 'failed', 'cancelled')),
    end_reason     text NOT NULL DEFAULT '',
    at             timestamptz NOT NULL,
    due_at         timestamptz NOT NULL,
    attempts       jsonb NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX callbacks_due_idx ON callbacks (status, due_at);
CREATE INDEX callbacks_phone_idx ON callbacks (phone);

-- The do-not-call list: a number here is never dialled by a callback (it is checked right
-- before each dial) and refused to a new callback (409).
CREATE TABLE do_not_call (
    phone      text PRIMARY KEY,
    added_by   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
