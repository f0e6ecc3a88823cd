-- The legal representative's signed authorisation behind each operator registration
-- (policies::authorisation), kept as evidence. One authorisation serves one registration:
-- the UNIQUE digest refuses a replay.
CREATE TABLE operator_authorisations (
    registration_id  TEXT PRIMARY KEY REFERENCES registrations (id),
    digest           TEXT NOT NULL UNIQUE,    -- SHA-256 of the signed document, lowercase hex
    signer_serial    TEXT NOT NULL,           -- the legal representative's certificate
    id_number_hash   TEXT NOT NULL,           -- the operator's identity-document hash
    cms              TEXT NOT NULL,           -- the CMS SignedData as received (PEM or DER), base64
    created_at       BIGINT NOT NULL
);
