-- eport-pki audit log, SQLite dialect, store format 3 (older formats are upgraded by
-- sqlite_upgrade_2.sql, from 1 to 2, and sqlite_upgrade_3.sql, from 2 to 3).
-- Run once, in one transaction, by AuditStore::init. The PostgreSQL file has the same tables.
-- Integers are Unix milliseconds (time_ms) or tree positions (idx, level, tree_size).

CREATE TABLE audit_metadata (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    format         INTEGER NOT NULL,   -- store format, 3
    hash_algorithm TEXT    NOT NULL,   -- sha256 | sm3, fixed at creation
    origin         TEXT    NOT NULL,   -- checkpoint origin line and key name
    public_key     BLOB    NOT NULL,   -- SPKI DER of the tree-head signer
    created_ms     INTEGER NOT NULL
);

-- One row per leaf. record is the canonical DER (the leaf is HASH(0x00 || record)); the other
-- columns are copies for queries, checked against the DER by a full verification. The *_key
-- columns are 64-bit lookup keys (store.rs: leaf_key, text_key): the indexes on random values
-- hold them instead of the values, and a lookup compares the full value on the rows it finds.
-- The object and leaf indexes lead with the epoch idx >> 16 (store.rs: EPOCH_BITS), so that
-- appends write only the current epoch's pages of them.
CREATE TABLE audit_records (
    idx        INTEGER PRIMARY KEY,
    time_ms    INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    object     TEXT,
    record     BLOB    NOT NULL,
    leaf_hash  BLOB    NOT NULL,
    leaf_key   INTEGER NOT NULL,   -- first 8 bytes of leaf_hash
    actor_key  INTEGER NOT NULL,   -- first 8 bytes of SHA-256(actor)
    object_key INTEGER             -- first 8 bytes of SHA-256(object); NULL when object is
);
CREATE INDEX audit_records_time ON audit_records (time_ms);
-- An index on one column also holds the rowid (idx), so these serve ORDER BY idx as well.
CREATE INDEX audit_records_actor ON audit_records (actor_key);
CREATE INDEX audit_records_event ON audit_records (event);
CREATE INDEX audit_records_object ON audit_records (idx >> 16, object_key);
CREATE INDEX audit_records_leaf ON audit_records (idx >> 16, leaf_key);

-- Every perfect subtree (2^level leaves from leaf idx * 2^level), leaves included; kept when
-- records are purged so that proofs for later records still work.
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- Signed tree heads (C2SP checkpoints).
CREATE TABLE audit_heads (
    tree_size  INTEGER PRIMARY KEY,
    root       BLOB    NOT NULL,
    checkpoint TEXT    NOT NULL,
    time_ms    INTEGER NOT NULL
);

-- Retention purges: records [from_idx, before_idx) were archived (under checkpoint) and deleted.
CREATE TABLE audit_purges (
    before_idx INTEGER PRIMARY KEY,
    from_idx   INTEGER NOT NULL,
    time_ms    INTEGER NOT NULL,
    checkpoint TEXT    NOT NULL
);

-- Guards against accidents, not against a database administrator (who can drop them; the Merkle
-- tree and the signed heads are what detect that).
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
WHEN OLD.idx >= (SELECT COALESCE(MAX(before_idx), 0) FROM audit_purges)
BEGIN SELECT RAISE(ABORT, 'audit records are deleted only by a purge, after archiving'); END;
CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit tree nodes are append-only'); END;
CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit tree nodes are append-only'); END;
CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'signed tree heads are append-only'); END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'signed tree heads are append-only'); END;
CREATE TRIGGER audit_purges_no_update BEFORE UPDATE ON audit_purges
BEGIN SELECT RAISE(ABORT, 'purge marks are append-only'); END;
CREATE TRIGGER audit_purges_no_delete BEFORE DELETE ON audit_purges
BEGIN SELECT RAISE(ABORT, 'purge marks are append-only'); END;
CREATE TRIGGER audit_metadata_no_update BEFORE UPDATE ON audit_metadata
BEGIN SELECT RAISE(ABORT, 'audit log metadata is fixed at creation'); END;
CREATE TRIGGER audit_metadata_no_delete BEFORE DELETE ON audit_metadata
BEGIN SELECT RAISE(ABORT, 'audit log metadata is fixed at creation'); END;
