-- The job queue, second step.
--
-- `discarded`: an administrator set a job aside for good. The row stays (until the cleanup of
-- finished jobs) so its dedupe key still recognises a late duplicate of the same Jira event,
-- which would only fail the same way again, and so the job list shows what became of it.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'running', 'done', 'dead', 'discarded'));

-- Names one claim of a job. Heartbeats and outcomes must match it, not just `locked_by`: a
-- worker that lost its lease must not overwrite the row even when another worker of the same
-- instance (the same `locked_by`) has claimed the job since.
ALTER TABLE jobs ADD COLUMN lease_token uuid;

-- The admin list, newest first within a state.
CREATE INDEX jobs_state_id ON jobs (state, id);
-- The daily cleanup of finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('done', 'discarded');
