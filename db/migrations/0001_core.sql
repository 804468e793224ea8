-- Calls, their event log and their recordings. Every row has a natural key so that
-- activities retried by Temporal write it once (ON CONFLICT).

CREATE TABLE calls (
    call_id          text PRIMARY KEY,
    room_name        text NOT NULL,
    customer_name    text,
    status           text NOT NULL,
    recording_status text NOT NULL DEFAULT 'none',
    created_at       timestamptz NOT NULL DEFAULT now(),
    agent_joined_at  timestamptz,
    ended_at         timestamptz,
    end_reason       text,
    silence_alerts   int NOT NULL DEFAULT 0,
    keyword_alerts   int NOT NULL DEFAULT 0,
    last_seq         bigint NOT NULL DEFAULT 0,       -- the newest event this row reflects
    line_count       int NOT NULL DEFAULT 0,
    egress_id        text,
    recording_error  text,                            -- why the recording failed, if it did
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_status_idx ON calls (status, created_at DESC);

CREATE TABLE call_events (
    call_id  text NOT NULL,
    seq      bigint NOT NULL,
    kind     text NOT NULL,
    at       timestamptz NOT NULL,
    data     jsonb NOT NULL,
    PRIMARY KEY (call_id, seq)
);

-- One row per stored recording (a failed pipeline leaves none: see calls.recording_error).
CREATE TABLE recordings (
    call_id     text PRIMARY KEY,
    bucket      text NOT NULL,
    object_key  text NOT NULL,
    egress_id   text NOT NULL,
    size_bytes  bigint NOT NULL,
    duration_s  double precision NOT NULL,
    sha256      text NOT NULL,
    incomplete  boolean NOT NULL DEFAULT false,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
