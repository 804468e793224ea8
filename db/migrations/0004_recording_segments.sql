-- Every egress of a call writes its own file (conversations/<call_id>/<n>.ogg); each stored
-- segment has a row, listed in order of n. `recordings` keeps the call's first segment.
CREATE TABLE recording_segments (
    call_id     text NOT NULL,
    n           int NOT NULL,
    bucket      text NOT NULL,
    object_key  text NOT NULL,
    egress_id   text NOT NULL,
    size_bytes  bigint NOT NULL,
    duration_s  double precision NOT NULL,
    sha256      text NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, n)
);
