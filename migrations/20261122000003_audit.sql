-- The audit trail: one row per file access and per admin change, written in the same
-- transaction as the change. Each row carries the hash of the previous one (a hash chain),
-- so `filebridge audit verify` finds an edited or deleted row.
CREATE TABLE audit_events (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor_key  text NOT NULL,
    actor_name text NOT NULL,
    action     text NOT NULL,
    target     text,
    path       text,
    size       bigint,
    outcome    text NOT NULL,
    client_ip  text,
    request_id text,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor_key, at);

-- Where the chain starts after retention removed older rows: the last removed row's seq and
-- hash, so verification can still check the first remaining row.
CREATE TABLE audit_anchor (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq       bigint NOT NULL,
    hash      bytea NOT NULL,
    purged_at timestamptz NOT NULL DEFAULT now()
);
