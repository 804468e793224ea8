-- Dashboard sessions, shared by every API instance: a cookie holds only an opaque random id;
-- the table keeps its SHA-256, so a copy of the table signs nobody in. A session names the
-- person (the identity provider's subject, and email when given) for the audit, the roles the
-- provider's roles claim listed at sign-in, and ends at `expires_at` or when `revoked_at` is set
-- (sign-out). `via` says how it began: `oidc` (the organisation's identity provider) or `token`
-- (an API token's holder asking for a codec cookie).
CREATE TABLE sessions (
    id_hash     bytea PRIMARY KEY,
    via         text NOT NULL CHECK (via IN ('oidc', 'token')),
    subject     text NOT NULL,
    email       text,
    name        text,
    roles       text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Sign-ins under way (OIDC authorization code with PKCE): the browser holds `state` in a cookie,
-- this table holds what the callback needs (the PKCE verifier, the nonce, where to go back),
-- keyed by the state's SHA-256, for any API instance to finish. One use; ten minutes.
CREATE TABLE sign_ins (
    state_hash     bytea PRIMARY KEY,
    code_verifier  text NOT NULL,
    nonce          text NOT NULL,
    return_to      text NOT NULL,
    redirect_uri   text NOT NULL,
    expires_at     timestamptz NOT NULL
);
