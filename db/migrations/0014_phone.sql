-- Phone calls (issue 23). A call has a channel (web, phone) and a direction (inbound,
-- outbound); a phone call's number is customer data (E.164): the API masks it for everyone but
-- an admin, and erasing the call deletes the row and with it the number.
ALTER TABLE calls
    ADD COLUMN channel   text NOT NULL DEFAULT 'web' CHECK (channel IN ('web', 'phone')),
    ADD COLUMN direction text NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound')),
    ADD COLUMN phone     text;

-- Outbound calls placed, for the hourly cap (SIP_OUTBOUND_MAX_PER_HOUR) across API instances:
-- the API counts and claims a place in one transaction under an advisory lock. No number here.
CREATE TABLE outbound_dials (
    call_id    text PRIMARY KEY,
    by_whom    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbound_dials_created_idx ON outbound_dials (created_at);
