-- eport-ca schema, version 3 (SQLite): key rotations (`eport-ca rotate ocsp-signer | tls`).
-- Keep in step with ../postgres/0003_key_rotations.sql.
--
-- The key ceremony makes generation 1 of each OCSP signer (`issuers.ocsp_der` / `ocsp_key`)
-- and of the HTTPS server certificate (`certs/tls-server.pem`, key `tls-server`). Each rotation
-- adds a generation: a new key (`ocsp-p256-g2`, `tls-server-g2`), a new certificate (also in
-- `certificates`) and a new file under <data>/certs/. Nothing is overwritten: the superseded
-- certificate and key stay where they were, and this table says which is current (the
-- highest generation), which it replaced, and when.
CREATE TABLE key_rotations (
    purpose            TEXT NOT NULL CHECK (purpose IN ('ocsp-signer', 'tls-server')),
    issuer             TEXT NOT NULL REFERENCES issuers (id),  -- the issuing CA ('p256' for TLS)
    generation         INTEGER NOT NULL,                       -- 2, 3, ... (the ceremony's is 1)
    key_name           TEXT NOT NULL,                          -- 'ocsp-p256-g2'
    serial             TEXT NOT NULL UNIQUE REFERENCES certificates (serial),
    certificate_file   TEXT NOT NULL,                          -- file name under <data>/certs/
    superseded_serial  TEXT NOT NULL,                          -- the certificate it replaced
    superseded_key     TEXT NOT NULL,                          -- and that certificate's key
    superseded_file    TEXT NOT NULL,
    rotated_at         INTEGER NOT NULL,
    PRIMARY KEY (purpose, issuer, generation)
);
