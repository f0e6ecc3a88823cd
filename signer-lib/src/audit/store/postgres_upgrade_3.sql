-- Upgrades an audit log from store format 2 to 3 (PostgreSQL), inside the transaction of
-- AuditStore::upgrade: the object and leaf-hash indexes lead with the epoch idx >> 16 (see
-- store.rs). Only indexes change; the metadata guard is lifted for the format number only.

DROP TRIGGER IF EXISTS audit_metadata_no_change ON audit_metadata;
DROP INDEX IF EXISTS audit_records_object;
DROP INDEX IF EXISTS audit_records_leaf;
CREATE INDEX audit_records_object ON audit_records ((idx >> 16), object_key, idx);
CREATE INDEX audit_records_leaf ON audit_records ((idx >> 16), leaf_key);
UPDATE audit_metadata SET format = 3 WHERE id = 1;
CREATE TRIGGER audit_metadata_no_change BEFORE UPDATE OR DELETE ON audit_metadata
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
