-- Admission of anonymous calls and the customer rate limit live here, not in an API process's
-- memory, so that every API instance enforces the same caps (api/domain/admission.py,
-- api/ratelimit.py). Both tables hold only what is live: an admitted call until it ends (or
-- MAX_CALL_DURATION_S passes), a rate bucket until it would be full again.

-- One row per call started through the customer endpoints and not yet seen ending.
CREATE TABLE admissions (
    call_id      text PRIMARY KEY,
    client_key   text NOT NULL,                 -- the address (an IPv6 client by its /64)
    admitted_at  timestamptz NOT NULL DEFAULT now(),
    joined_at    timestamptz                    -- the customer is in: the call no longer waits
);
CREATE INDEX admissions_client ON admissions (client_key);
CREATE INDEX admissions_admitted ON admissions (admitted_at);

-- Token buckets of the customer endpoints' rate limit, one per client.
CREATE TABLE rate_buckets (
    client_key  text PRIMARY KEY,
    tokens      double precision NOT NULL,
    updated_at  timestamptz NOT NULL,
    allowed     boolean NOT NULL                -- the last request's answer
);
CREATE INDEX rate_buckets_updated ON rate_buckets (updated_at);
