-- Runtime settings that admins change through the API (bootstrap settings stay in the
-- config file). One row per setting; the value is JSON so settings can grow without DDL.
CREATE TABLE settings (
    key        text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_.]*$'),
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
