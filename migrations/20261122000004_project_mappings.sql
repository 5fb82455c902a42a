-- Which connection and folder hold a Jira project's files. Keyed on Jira's numeric project
-- id (keys change when a project is renamed); the key is kept for display and lookup.
CREATE TABLE project_mappings (
    project_id    text PRIMARY KEY,
    project_key   text NOT NULL UNIQUE,
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    root          text NOT NULL,
    issue_folder  text NOT NULL DEFAULT '{issue.key}',
    auto_create   boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text NOT NULL
);
CREATE INDEX project_mappings_connection ON project_mappings (connection_id);
