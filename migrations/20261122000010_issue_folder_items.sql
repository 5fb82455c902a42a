-- The storage's own id of an issue's folder, for storages whose ids survive renames made in
-- the storage itself (SharePoint's driveItem ids): a folder renamed or moved there is found
-- again by id. NULL for storages addressed by path, and for folders recorded before.
ALTER TABLE issue_folders ADD COLUMN item_id text;
