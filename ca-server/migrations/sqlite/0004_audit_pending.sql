-- eport-ca schema, version 4 (SQLite): issuance marks a row issued while its `Issue` audit record
-- is being committed, not after. Keep in step with ../postgres/0004_audit_pending.sql.
--
-- `audit_pending` is 1 from the moment an issuance marks its row `good` until it knows its
-- `Issue` record is committed too (cleared in a later batch, not waited for). A row still
-- pending when the CA starts is resolved from the audit log: with a successful `Issue` record
-- for its serial it is cleared; without one its certificate was never released, and the row is
-- abandoned (see ca-server/src/service.rs, "Issuance durability"). The partial index keeps that
-- start-up check to the few rows an interrupted run can leave.
ALTER TABLE certificates ADD COLUMN audit_pending INTEGER NOT NULL DEFAULT 0 CHECK (audit_pending IN (0, 1));
CREATE INDEX certificates_audit_pending ON certificates (serial) WHERE audit_pending = 1;
