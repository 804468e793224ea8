-- A final line in one round trip. The API stores each line the agent sends, with its keyword
-- alert and its turn's figures; done as separate statements in a transaction with a savepoint
-- per event that took about seven round trips a line, the largest part of a line's way to the
-- dashboard at 500 live calls (docs/benchmarks.md). One statement is one transaction: the
-- erasure check and every append below commit together or not at all. A line PostgreSQL
-- refuses raises here, and core/eventlog.py stores it event by event to find which one.
--
-- p_events: [{"event_id", "kind", "data"}, ...], the line first. Returns {"erased": true}, or
-- {"seqs": [...]}: the seq of each event stored, null for one stored before; after a line
-- stored before, nothing else is stored (a resend).
CREATE FUNCTION store_call_line(p_call_id text, p_events jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    data jsonb;
    line_seq bigint;
    s bigint;
    seqs jsonb := '[]'::jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM erasures WHERE call_id = p_call_id) THEN
        RETURN jsonb_build_object('erased', true);
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(p_events) LOOP
        data := e->'data';
        IF line_seq IS NOT NULL AND e->>'kind' = 'keyword_alert' THEN
            data := jsonb_set(data, '{line_seq}', to_jsonb(line_seq));
        END IF;
        s := append_call_event(p_call_id, e->>'event_id', e->>'kind', NULL, data);
        seqs := seqs || COALESCE(to_jsonb(s), 'null'::jsonb);
        IF line_seq IS NULL THEN
            IF s IS NULL THEN
                EXIT;  -- the line was stored before: a resend stores nothing more
            END IF;
            line_seq := s;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('seqs', seqs);
END
$$;
