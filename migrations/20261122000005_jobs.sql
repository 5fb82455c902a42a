-- The durable job queue: Jira events and other background work, worked by every instance.
-- A job is claimed with FOR UPDATE SKIP LOCKED and held by a lease that its worker renews;
-- a job whose lease ran out (its instance died) is claimed again by another.
CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    -- Jira's identity of the event (or another natural key): the same event queued twice is
    -- one job. Kept after the job is done so late duplicates are still recognised.
    dedupe_key   text UNIQUE,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL DEFAULT now(),
    locked_by    text,
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
-- What workers look for: due queued jobs, and running jobs whose lease expired.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, updated_at);
