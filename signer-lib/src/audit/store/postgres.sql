-- eport-pki audit log, PostgreSQL dialect, store format 3 (older formats are upgraded by
-- postgres_upgrade_2.sql, from 1 to 2, and postgres_upgrade_3.sql, from 2 to 3).
-- Run once, in one transaction, by AuditStore::init. The SQLite file has the same tables.
-- Integers are Unix milliseconds (time_ms) or tree positions (idx, level, tree_size). The tables
-- go into the first schema of the connection's search_path.

CREATE TABLE audit_metadata (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    format         BIGINT NOT NULL,   -- store format, 3
    hash_algorithm TEXT   NOT NULL,   -- sha256 | sm3, fixed at creation
    origin         TEXT   NOT NULL,   -- checkpoint origin line and key name
    public_key     BYTEA  NOT NULL,   -- SPKI DER of the tree-head signer
    created_ms     BIGINT NOT NULL
);

-- One row per leaf. record is the canonical DER (the leaf is HASH(0x00 || record)); the other
-- columns are copies for queries, checked against the DER by a full verification. The *_key
-- columns are 64-bit lookup keys (store.rs: leaf_key, text_key): the indexes on random values
-- hold them instead of the values, and a lookup compares the full value on the rows it finds.
-- The object and leaf indexes lead with the epoch idx >> 16 (store.rs: EPOCH_BITS), so that
-- appends write only the current epoch's pages of them.
CREATE TABLE audit_records (
    idx        BIGINT PRIMARY KEY,
    time_ms    BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    event      TEXT   NOT NULL,
    object     TEXT,
    record     BYTEA  NOT NULL,
    leaf_hash  BYTEA  NOT NULL,
    leaf_key   BIGINT NOT NULL,   -- first 8 bytes of leaf_hash
    actor_key  BIGINT NOT NULL,   -- first 8 bytes of SHA-256(actor)
    object_key BIGINT             -- first 8 bytes of SHA-256(object); NULL when object is
);
CREATE INDEX audit_records_time ON audit_records (time_ms);
CREATE INDEX audit_records_actor ON audit_records (actor_key, idx);
CREATE INDEX audit_records_event ON audit_records (event, idx);
CREATE INDEX audit_records_object ON audit_records ((idx >> 16), object_key, idx);
CREATE INDEX audit_records_leaf ON audit_records ((idx >> 16), leaf_key);

-- Every perfect subtree (2^level leaves from leaf idx * 2^level), leaves included; kept when
-- records are purged so that proofs for later records still work.
CREATE TABLE audit_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA  NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads (C2SP checkpoints).
CREATE TABLE audit_heads (
    tree_size  BIGINT PRIMARY KEY,
    root       BYTEA  NOT NULL,
    checkpoint TEXT   NOT NULL,
    time_ms    BIGINT NOT NULL
);

-- Retention purges: records [from_idx, before_idx) were archived (under checkpoint) and deleted.
CREATE TABLE audit_purges (
    before_idx BIGINT PRIMARY KEY,
    from_idx   BIGINT NOT NULL,
    time_ms    BIGINT NOT NULL,
    checkpoint TEXT   NOT NULL
);

-- Guards against accidents, not against a database administrator (who can drop them; the Merkle
-- tree and the signed heads are what detect that).
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit table % is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE FUNCTION audit_records_delete_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.idx >= (SELECT COALESCE(MAX(before_idx), 0) FROM audit_purges) THEN
        RAISE EXCEPTION 'audit records are deleted only by a purge, after archiving';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_delete_guard();
CREATE TRIGGER audit_nodes_no_change BEFORE UPDATE OR DELETE ON audit_nodes
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_heads_no_change BEFORE UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_purges_no_change BEFORE UPDATE OR DELETE ON audit_purges
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_metadata_no_change BEFORE UPDATE OR DELETE ON audit_metadata
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
