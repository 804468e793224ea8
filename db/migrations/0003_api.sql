-- Erasures: proof that a call's data was erased (who asked, when, what was removed), without
-- any of the erased content. The call id is an opaque random id, not customer data; keeping it
-- lets an auditor answer "was call X erased?" and makes a repeated erasure a no-op.

CREATE TABLE IF NOT EXISTS erasures (
    call_id             text PRIMARY KEY,
    requested_by        text NOT NULL,
    requested_at        timestamptz NOT NULL,
    completed_at        timestamptz NOT NULL DEFAULT now(),
    rows_deleted        integer NOT NULL,
    object_deleted      boolean NOT NULL,
    executions_deleted  integer NOT NULL
);
