-- The event log is written by more than one writer: the API stores each final transcript line
-- the agent sends (the system of record for what was said), the call's workflow stores what it
-- decided (status, alerts, recording). So writers no longer choose `seq`: every event carries an
-- id unique in its call (a line's own id, `kw:<line id>` for its keyword alert, the workflow's
-- `wf:<n>`, the pipeline's `rec:<run>:<status>`), and `append_call_event` allocates the next
-- `seq` under a per-call lock held to commit, so seq order is commit order (the live fan-out
-- reads a gap as a lost notification) and a repeated id inserts nothing.
ALTER TABLE call_events ADD COLUMN event_id text;
CREATE UNIQUE INDEX call_events_event_id ON call_events (call_id, event_id);

-- The workflow's own version of the row (it only grows): an older write never wins.
ALTER TABLE calls ADD COLUMN row_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION append_call_event(p_call_id text, p_event_id text, p_kind text,
                                  p_at timestamptz, p_data jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
    stamp timestamptz := COALESCE(p_at, now());
    note text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('call_events:' || p_call_id, 0));
    IF p_event_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM call_events WHERE call_id = p_call_id AND event_id = p_event_id
    ) THEN
        RETURN NULL;  -- stored already: a resend changes nothing
    END IF;
    SELECT COALESCE(max(seq), 0) + 1 INTO next_seq FROM call_events WHERE call_id = p_call_id;
    INSERT INTO call_events (call_id, seq, event_id, kind, at, data)
    VALUES (p_call_id, next_seq, p_event_id, p_kind, stamp, p_data);
    UPDATE calls SET
        last_seq = GREATEST(last_seq, next_seq),
        line_count = line_count + (p_kind = 'final_transcript')::int,
        keyword_alerts = keyword_alerts + (p_kind = 'keyword_alert')::int
    WHERE call_id = p_call_id;
    -- The whole event when it fits a notification (the live fan-out then needs no read of
    -- the table), else its key alone (pg_notify refuses 8000 bytes or more).
    note := json_build_object('call_id', p_call_id, 'seq', next_seq, 'kind', p_kind,
                              'at', stamp, 'data', p_data)::text;
    IF octet_length(note) > 7999 THEN
        note := json_build_object('call_id', p_call_id, 'seq', next_seq, 'kind', p_kind)::text;
    END IF;
    PERFORM pg_notify('call_events', note);
    RETURN next_seq;
END
$$;
