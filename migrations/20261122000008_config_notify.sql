-- Every instance caches opened storages and project mappings. When an admin changes one
-- through any instance (or a job changes a mapping), every instance must drop its copy at
-- once: these triggers announce each change on the `filebridge_config` channel, and each
-- instance LISTENs. Notifications are sent at commit, never for a rolled-back change, and
-- Postgres folds identical ones within a transaction into one.
CREATE FUNCTION filebridge_config_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    -- "<what>:<id>", e.g. "connection:0b0c…" or "mapping:10000".
    PERFORM pg_notify('filebridge_config', TG_ARGV[0] || ':' || (changed ->> TG_ARGV[1]));
    RETURN NULL;
END;
$$;

CREATE TRIGGER connections_changed
    AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION filebridge_config_changed('connection', 'id');

CREATE TRIGGER connection_secrets_changed
    AFTER INSERT OR UPDATE OR DELETE ON connection_secrets
    FOR EACH ROW EXECUTE FUNCTION filebridge_config_changed('connection', 'connection_id');

CREATE TRIGGER project_mappings_changed
    AFTER INSERT OR UPDATE OR DELETE ON project_mappings
    FOR EACH ROW EXECUTE FUNCTION filebridge_config_changed('mapping', 'project_id');
