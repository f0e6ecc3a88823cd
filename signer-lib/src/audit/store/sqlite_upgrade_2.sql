-- Upgrades an audit log from store format 1 to 2 (SQLite), inside the transaction of
-- AuditStore::upgrade: the random-value indexes become indexes on 64-bit keys (see store.rs).
-- The part before the marker runs first; then the store fills leaf_key, actor_key and
-- object_key of every row from its leaf_hash, actor and object; then the part after it runs.
-- The object and leaf-hash indexes are not made here: the 2 → 3 script, which always follows in
-- the same transaction, makes them in their format-3 form.
-- The update guards are lifted for the fill only and put back as sqlite.sql has them.

DROP TRIGGER IF EXISTS audit_records_no_update;
DROP TRIGGER IF EXISTS audit_metadata_no_update;
DROP INDEX IF EXISTS audit_records_actor;
DROP INDEX IF EXISTS audit_records_object;
DROP INDEX IF EXISTS audit_records_leaf;
ALTER TABLE audit_records ADD COLUMN leaf_key INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_records ADD COLUMN actor_key INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_records ADD COLUMN object_key INTEGER;

-- @fill

CREATE INDEX audit_records_actor ON audit_records (actor_key);
UPDATE audit_metadata SET format = 2 WHERE id = 1;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_metadata_no_update BEFORE UPDATE ON audit_metadata
BEGIN SELECT RAISE(ABORT, 'audit log metadata is fixed at creation'); END;
