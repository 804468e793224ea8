-- The id of a supervisor command (whisper, takeover, release) names one command on its call.
-- The API claims it here before it records and sends the command, so a retry (same action,
-- caller and text) goes through as the same command, and an id reused for another command is
-- refused and recorded on the call instead of being dropped as a duplicate. The text itself is
-- on the call's event log; here only its digest. Erasing a call deletes its rows (call_id).
CREATE TABLE supervisor_commands (
    call_id     text NOT NULL,
    command_id  text NOT NULL,
    action      text NOT NULL,
    by_whom     text NOT NULL,
    text_sha256 text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, command_id)
);
