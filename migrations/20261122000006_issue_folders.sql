-- Which storage folder belongs to which Jira issue, keyed on Jira's numeric issue id, so
-- lookups do not depend on keys or names (keys change when an issue moves project).
CREATE TABLE issue_folders (
    issue_id      text PRIMARY KEY,
    issue_key     text NOT NULL,
    project_id    text NOT NULL,
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    -- Relative to the connection's root.
    path          text NOT NULL,
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'archived')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX issue_folders_project ON issue_folders (project_id, state);
CREATE UNIQUE INDEX issue_folders_key ON issue_folders (issue_key) WHERE state = 'active';

-- How far reconciliation has read each mapped project's changes in Jira (Jira's `updated`).
CREATE TABLE reconcile_cursors (
    project_id text PRIMARY KEY,
    cursor     timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
