-- eport-ca schema, version 1 (PostgreSQL). Times are BIGINT Unix seconds (UTC); serials are
-- lowercase hex TEXT without colons; DER is BYTEA. Keep in step with ../sqlite/0001_initial.sql.

-- One row per algorithm hierarchy: the root, the issuing CA and its OCSP and TSA certificates.
CREATE TABLE issuers (
    id            TEXT PRIMARY KEY,            -- 'p256', 'sm2'
    algorithm     TEXT NOT NULL,               -- signer-lib name: 'p256', 'sm2'
    root_der      BYTEA NOT NULL,
    issuing_der   BYTEA NOT NULL,
    issuing_key   TEXT NOT NULL,               -- key name: 'issuing-p256'
    ocsp_der      BYTEA NOT NULL,
    ocsp_key      TEXT NOT NULL,
    tsa_der       BYTEA NOT NULL,
    tsa_key       TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Administrators (officer certificates). A subject holds exactly one role (三权分立): the
-- role is a single column and the subject is UNIQUE, so no identity can hold two.
CREATE TABLE identities (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,        -- 'security-officer-1'
    subject       TEXT NOT NULL UNIQUE,        -- RFC 4514 subject of the officer certificate
    serial        TEXT NOT NULL UNIQUE,        -- the current officer certificate
    role          TEXT NOT NULL CHECK (role IN ('system_administrator', 'security_officer', 'audit_officer')),
    created_at    BIGINT NOT NULL
);

CREATE TABLE registrations (
    id                    TEXT PRIMARY KEY,    -- 16 lowercase hex digits (64 random bits)
    kind                  TEXT NOT NULL CHECK (kind IN ('enterprise', 'agency')),
    identifier            TEXT NOT NULL,       -- USCC (enterprise) or agency code (agency)
    name                  TEXT NOT NULL,
    legal_representative  TEXT,
    person_name           TEXT NOT NULL,       -- the certificate holder (commonName)
    profile               TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'enrolled')),
    approvals_needed      BIGINT NOT NULL,
    created_by            TEXT NOT NULL,       -- officer subject
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX registrations_identifier ON registrations (identifier);

-- One approval per officer per registration: dual control needs two different officers.
CREATE TABLE approvals (
    registration_id  TEXT NOT NULL REFERENCES registrations (id),
    officer          TEXT NOT NULL,            -- officer subject
    approved_at      BIGINT NOT NULL,
    UNIQUE (registration_id, officer)
);

-- The one-time enrolment code of an approved registration, as SHA-256 of the secret part.
CREATE TABLE enrolment_codes (
    registration_id  TEXT PRIMARY KEY REFERENCES registrations (id),
    code_hash        BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,   -- wrong codes tried against this registration
    used_at          BIGINT,                      -- set when claimed by an enrolment
    serial           TEXT                          -- the certificate it was used for
);

-- Every serial ever reserved, issued or not: the UNIQUE key is what makes a serial single-use.
-- status: issuing (reserved, not yet released) -> good | abandoned; good <-> hold; good|hold -> revoked.
CREATE TABLE certificates (
    serial             TEXT PRIMARY KEY,
    issuer             TEXT NOT NULL REFERENCES issuers (id),
    subject            TEXT NOT NULL,
    profile            TEXT NOT NULL,
    registration_id    TEXT REFERENCES registrations (id),
    uscc               TEXT,
    not_before         BIGINT NOT NULL,
    not_after          BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('issuing', 'good', 'revoked', 'hold', 'abandoned')),
    revoked_at         BIGINT,
    revocation_reason  BIGINT,                    -- RFC 5280 CRLReason code
    der                BYTEA,                       -- set when status leaves 'issuing' for 'good'
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL            -- OCSP change feed: every status change bumps it
);
CREATE INDEX certificates_issuer_status ON certificates (issuer, status);
CREATE INDEX certificates_uscc ON certificates (uscc);
CREATE INDEX certificates_updated_at ON certificates (updated_at);
CREATE INDEX certificates_registration ON certificates (registration_id);

-- The last cRLNumber per issuer, incremented in the transaction that stores the CRL.
CREATE TABLE crl_numbers (
    issuer       TEXT PRIMARY KEY REFERENCES issuers (id),
    last_number  BIGINT NOT NULL
);

-- The latest CRL per issuer, as published.
CREATE TABLE crls (
    issuer       TEXT PRIMARY KEY REFERENCES issuers (id),
    number       BIGINT NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL,
    der          BYTEA NOT NULL
);

-- Authentication failures per identity ('serial:<hex>' or 'source:<ip>'), and locks.
CREATE TABLE auth_failures (
    id        BIGSERIAL PRIMARY KEY,
    identity  TEXT NOT NULL,
    at        BIGINT NOT NULL,
    reason    TEXT NOT NULL
);
CREATE INDEX auth_failures_identity_at ON auth_failures (identity, at);

CREATE TABLE lockouts (
    identity      TEXT PRIMARY KEY,
    locked_until  BIGINT NOT NULL
);
