//! The CA database: one implementation on sqlx's `AnyPool`, for SQLite and PostgreSQL alike,
//! chosen by the URL (`sqlite:PATH` or `postgres://…`).
//!
//! The statements are the same text on both (`$n` placeholders, `INSERT … ON CONFLICT`,
//! `UPDATE … RETURNING`); only the migrations differ per dialect (`migrations/sqlite`,
//! `migrations/postgres`, embedded, applied in order and recorded in `schema_version`).
//! sqlx's `Any` driver maps only integers, floats, text and bytes, so times are `i64` Unix
//! seconds, serials lowercase hex text and DER a blob.
//!
//! Write transactions on SQLite start with `BEGIN IMMEDIATE`, taking the write lock up front
//! so that two writers queue (busy timeout) instead of one failing half-way on a lock upgrade.
//! On PostgreSQL, transactions that decide from a row they read first lock it by updating it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};

use crate::Error;

mod codes;
mod issuance;
mod rotations;

pub use issuance::{Claim, IssuanceWriter, Reservation};
pub use rotations::{Purpose, RotationRow};

/// The migrations of each dialect: (version, SQL), in order.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_initial.sql")),
    (2, include_str!("../migrations/sqlite/0002_operator_authorisations.sql")),
    (3, include_str!("../migrations/sqlite/0003_key_rotations.sql")),
    (4, include_str!("../migrations/sqlite/0004_audit_pending.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_initial.sql")),
    (2, include_str!("../migrations/postgres/0002_operator_authorisations.sql")),
    (3, include_str!("../migrations/postgres/0003_key_rotations.sql")),
    (4, include_str!("../migrations/postgres/0004_audit_pending.sql")),
];

/// The SQLite busy timeout: how long a writer waits for another to finish.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings of every SQLite connection (pooled, and the issuance writer's). journal_mode is
/// persistent in the file (set once by `connect`); these are per connection: the busy timeout
/// is [`SQLITE_BUSY_TIMEOUT`], and synchronous=FULL means a commit is on disk (WAL synced) when
/// it returns.
const SQLITE_CONNECTION_PRAGMAS: &str =
    "PRAGMA busy_timeout = 30000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON";

/// A transaction on the CA database.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The SQL dialect behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3 (bundled).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The CA database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// The database file on SQLite (the issuance writer opens its own connection to it); `None`
    /// on PostgreSQL.
    sqlite_path: Option<PathBuf>,
}

/// An issuer hierarchy row (see `issuers` in the migrations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRow {
    /// `p256` or `sm2`.
    pub id: String,
    /// The signer-lib algorithm name.
    pub algorithm: String,
    /// The root certificate.
    pub root_der: Vec<u8>,
    /// The issuing CA certificate.
    pub issuing_der: Vec<u8>,
    /// The issuing CA key's name.
    pub issuing_key: String,
    /// The OCSP signer certificate.
    pub ocsp_der: Vec<u8>,
    /// The OCSP signer key's name.
    pub ocsp_key: String,
    /// The TSA certificate.
    pub tsa_der: Vec<u8>,
    /// The TSA key's name.
    pub tsa_key: String,
    /// When the hierarchy was made (Unix seconds).
    pub created_at: i64,
}

/// An administrator identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRow {
    /// The bootstrap name (`security-officer-1`).
    pub name: String,
    /// The officer certificate's subject (RFC 4514).
    pub subject: String,
    /// The officer certificate's serial (lowercase hex).
    pub serial: String,
    /// `system_administrator`, `security_officer` or `audit_officer`.
    pub role: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationRow {
    /// 16 lowercase hex digits.
    pub id: String,
    /// `enterprise` or `agency`.
    pub kind: String,
    /// USCC or agency code.
    pub identifier: String,
    /// Enterprise or agency name.
    pub name: String,
    /// The enterprise's legal representative.
    pub legal_representative: Option<String>,
    /// The certificate holder's name.
    pub person_name: String,
    /// The certificate profile id.
    pub profile: String,
    /// `pending`, `approved`, `enrolled`.
    pub status: String,
    /// Approvals needed (1, or 2 under dual control).
    pub approvals_needed: i64,
    /// The registering officer's subject.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// An enrolment code (hashed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRow {
    /// The registration the code is for.
    pub registration_id: String,
    /// SHA-256 of the code's secret part.
    pub code_hash: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Wrong codes tried against this registration.
    pub attempts: i64,
    /// When an enrolment claimed it.
    pub used_at: Option<i64>,
    /// The certificate it was used for.
    pub serial: Option<String>,
}

/// A certificate (or a reserved serial).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRow {
    /// Lowercase hex.
    pub serial: String,
    /// Issuer id.
    pub issuer: String,
    /// RFC 4514 subject.
    pub subject: String,
    /// Profile id.
    pub profile: String,
    /// The registration it was issued for.
    pub registration_id: Option<String>,
    /// The enterprise's USCC.
    pub uscc: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// `issuing`, `good`, `revoked`, `hold`, `abandoned`.
    pub status: String,
    /// Unix seconds.
    pub revoked_at: Option<i64>,
    /// RFC 5280 CRLReason code.
    pub revocation_reason: Option<i64>,
    /// The certificate, once issued.
    pub der: Option<Vec<u8>>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// The authorisation behind an operator registration (see `operator_authorisations`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorAuthorisationRow {
    /// The operator's registration.
    pub registration_id: String,
    /// SHA-256 of the signed document, lowercase hex.
    pub digest: String,
    /// The legal representative's certificate serial (lowercase hex).
    pub signer_serial: String,
    /// The operator's identity-document hash, as authorised.
    pub id_number_hash: String,
    /// The CMS SignedData as received (PEM or DER), base64.
    pub cms_base64: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A serial to reserve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCertificate {
    /// Lowercase hex.
    pub serial: String,
    /// Issuer id.
    pub issuer: String,
    /// RFC 4514 subject.
    pub subject: String,
    /// Profile id.
    pub profile: String,
    /// The registration.
    pub registration_id: Option<String>,
    /// The enterprise's USCC.
    pub uscc: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// The latest CRL of an issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRow {
    /// cRLNumber.
    pub number: i64,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds.
    pub next_update: i64,
    /// The CRL.
    pub der: Vec<u8>,
}

/// A CRL entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedRow {
    /// Lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// RFC 5280 CRLReason code.
    pub reason: i64,
}

/// What [`Store::code_with_registration`] reads: the source's lock, if any, and the code with
/// its registration.
pub type CodeCheck = (Option<i64>, Option<(CodeRow, Option<RegistrationRow>)>);

/// Which certificates [`Store::list_certificates`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// By USCC.
    pub uscc: Option<String>,
    /// By status name.
    pub status: Option<String>,
    /// By serial (lowercase hex).
    pub serial: Option<String>,
    /// At most this many.
    pub limit: i64,
}

// The statements of issuance, shared by the sqlx functions below and the SQLite issuance writer
// (`store/issuance.rs`, on rusqlite). `$n` placeholders: SQLite numbers them in order of first
// appearance, which is their numeric order here, so positional binding works on both drivers.

/// Claims an enrolment code: `now`, registration id, attempt limit.
const CLAIM_CODE: &str = "UPDATE enrolment_codes SET used_at = $1 WHERE registration_id = $2 AND used_at IS NULL \
                          AND expires_at > $1 AND attempts < $3";
/// Gives back a code claimed earlier in the same transaction: registration id.
const UNCLAIM_CODE: &str = "UPDATE enrolment_codes SET used_at = NULL WHERE registration_id = $1";
/// Records the certificate a code was used for: serial, registration id.
const SET_CODE_SERIAL: &str = "UPDATE enrolment_codes SET serial = $1 WHERE registration_id = $2";
/// Sets a registration's status: status, `now`, id.
const SET_REGISTRATION_STATUS: &str = "UPDATE registrations SET status = $1, updated_at = $2 WHERE id = $3";
/// Marks a reserved serial issued, its `Issue` audit record still pending: DER, `now`, serial.
const MARK_ISSUED: &str = "UPDATE certificates SET status = 'good', der = $1, updated_at = $2, audit_pending = 1 \
                           WHERE serial = $3 AND status = 'issuing'";
/// Records that an issued serial's `Issue` audit record is committed: serial.
const CLEAR_AUDIT_PENDING: &str = "UPDATE certificates SET audit_pending = 0 WHERE serial = $1 AND audit_pending = 1";
/// Inserts a certificate row: serial, issuer, subject, profile, registration id, USCC,
/// not before, not after, status, DER, `now`.
const INSERT_CERTIFICATE: &str = "INSERT INTO certificates (serial, issuer, subject, profile, registration_id, uscc, \
                                  not_before, not_after, status, der, created_at, updated_at) \
                                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)";
/// [`INSERT_CERTIFICATE`], inserting nothing when the serial exists.
const INSERT_CERTIFICATE_IF_FREE: &str = "INSERT INTO certificates (serial, issuer, subject, profile, registration_id, \
                                          uscc, not_before, not_after, status, der, created_at, updated_at) \
                                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                                          ON CONFLICT (serial) DO NOTHING";

const CERT_COLUMNS: &str = "serial, issuer, subject, profile, registration_id, uscc, not_before, not_after, status, \
                            revoked_at, revocation_reason, der, created_at, updated_at";

/// Whether `e` is a UNIQUE or PRIMARY KEY violation.
#[must_use]
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Connects to `url` and applies the migrations not yet applied. A SQLite file is created
    /// when `create` is set (and put in WAL mode).
    ///
    /// # Errors
    /// [`Error::Config`] for another URL scheme; [`Error::Store`] when the database cannot be
    /// opened or migrated.
    pub async fn connect(url: &str, max_connections: u32, create: bool) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = if url.starts_with("sqlite:") {
            let url = if create && !url.contains("mode=") {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            } else {
                url.to_owned()
            };
            (Dialect::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_owned())
        } else {
            return Err(Error::Config("the database URL must start with sqlite: or postgres://".into()));
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| Error::Store(format!("bad database URL: {e}")))?;
        let sqlite_path = match dialect {
            Dialect::Sqlite => Some(
                sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                    .map_err(|e| Error::Store(format!("bad database URL: {e}")))?
                    .get_filename()
                    .to_path_buf(),
            ),
            Dialect::Postgres => None,
        };
        let mut pool_options = AnyPoolOptions::new().max_connections(max_connections.max(1));
        if dialect == Dialect::Sqlite {
            // No ping when a connection is taken from the pool: sqlx already pings every
            // connection when it is given back (and closes it if that fails), and an idle
            // connection to a file in this process cannot go stale the way a network one can; a
            // broken one fails its statement, which callers already handle. The ping is a round
            // trip to the connection's worker thread, one more for every statement run on the
            // pool (PostgreSQL keeps it: there it finds connections the server has dropped).
            pool_options = pool_options.test_before_acquire(false).after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::raw_sql(SQLITE_CONNECTION_PRAGMAS).execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .acquire_timeout(SQLITE_BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| Error::Store(format!("cannot open the CA database: {e}")))?;
        if dialect == Dialect::Sqlite {
            sqlx::raw_sql("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let store = Self { pool, sqlite_path };
        store.migrate().await?;
        Ok(store)
    }

    /// The dialect.
    #[must_use]
    pub fn dialect(&self) -> Dialect {
        if self.sqlite_path.is_some() { Dialect::Sqlite } else { Dialect::Postgres }
    }

    /// The database file, on SQLite.
    #[must_use]
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.sqlite_path.as_deref()
    }

    /// The pool, for callers (tests, the OCSP feed) that need a query this type does not offer.
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn begin(&self) -> Result<Tx, Error> {
        Ok(match self.dialect() {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// The schema version applied.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn schema_version(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT MAX(version) FROM schema_version").fetch_one(&self.pool).await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    async fn migrate(&self) -> Result<(), Error> {
        let migrations = match self.dialect() {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Postgres => POSTGRES_MIGRATIONS,
        };
        let mut tx = self.begin().await?;
        if self.dialect() == Dialect::Postgres {
            // Two processes starting at once: the second waits here, then sees the first's work.
            sqlx::query("SELECT pg_advisory_xact_lock(72016)").execute(&mut *tx).await?;
        }
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT MAX(version) FROM schema_version").fetch_one(&mut *tx).await?;
        let current = row.try_get::<Option<i64>, _>(0)?.unwrap_or(0);
        if let Some(latest) = migrations.last().map(|(v, _)| *v)
            && current > latest
        {
            return Err(Error::Store(format!(
                "the database is at schema version {current}, newer than this program's {latest}"
            )));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (version, sql) in migrations.iter().filter(|(v, _)| *v > current) {
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::Store(format!("migration {version}: {e}")))?;
            sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- issuers -------------------------------------------------------------------------

    /// Adds an issuer hierarchy and its cRLNumber counter (at 0).
    ///
    /// # Errors
    /// [`Error::Store`], including when the id exists.
    pub async fn insert_issuer(&self, conn: &mut AnyConnection, row: &IssuerRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO issuers (id, algorithm, root_der, issuing_der, issuing_key, ocsp_der, ocsp_key, tsa_der, \
             tsa_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.id)
        .bind(&row.algorithm)
        .bind(&row.root_der)
        .bind(&row.issuing_der)
        .bind(&row.issuing_key)
        .bind(&row.ocsp_der)
        .bind(&row.ocsp_key)
        .bind(&row.tsa_der)
        .bind(&row.tsa_key)
        .bind(row.created_at)
        .execute(&mut *conn)
        .await?;
        sqlx::query("INSERT INTO crl_numbers (issuer, last_number) VALUES ($1, 0)")
            .bind(&row.id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Every issuer hierarchy, by id.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn issuers(&self) -> Result<Vec<IssuerRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, algorithm, root_der, issuing_der, issuing_key, ocsp_der, ocsp_key, tsa_der, tsa_key, \
             created_at FROM issuers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IssuerRow {
                    id: r.try_get(0)?,
                    algorithm: r.try_get(1)?,
                    root_der: r.try_get(2)?,
                    issuing_der: r.try_get(3)?,
                    issuing_key: r.try_get(4)?,
                    ocsp_der: r.try_get(5)?,
                    ocsp_key: r.try_get(6)?,
                    tsa_der: r.try_get(7)?,
                    tsa_key: r.try_get(8)?,
                    created_at: r.try_get(9)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    // ---- identities ----------------------------------------------------------------------

    /// Registers an administrator identity with its one role.
    ///
    /// # Errors
    /// [`Error::Store`], including when the name, subject or serial is taken (one role per
    /// identity).
    pub async fn insert_identity(&self, conn: &mut AnyConnection, row: &IdentityRow) -> Result<(), Error> {
        sqlx::query("INSERT INTO identities (name, subject, serial, role, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.name)
            .bind(&row.subject)
            .bind(&row.serial)
            .bind(&row.role)
            .bind(row.created_at)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// The identity whose current certificate has this serial.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn identity_by_serial(&self, serial: &str) -> Result<Option<IdentityRow>, Error> {
        let row = sqlx::query("SELECT name, subject, serial, role, created_at FROM identities WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(IdentityRow {
                name: r.try_get(0)?,
                subject: r.try_get(1)?,
                serial: r.try_get(2)?,
                role: r.try_get(3)?,
                created_at: r.try_get(4)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| Error::from(e))
    }

    // ---- registrations -------------------------------------------------------------------

    /// Adds a registration.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn insert_registration(&self, conn: &mut AnyConnection, row: &RegistrationRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO registrations (id, kind, identifier, name, legal_representative, person_name, profile, \
             status, approvals_needed, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&row.id)
        .bind(&row.kind)
        .bind(&row.identifier)
        .bind(&row.name)
        .bind(row.legal_representative.clone())
        .bind(&row.person_name)
        .bind(&row.profile)
        .bind(&row.status)
        .bind(row.approvals_needed)
        .bind(&row.created_by)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Stores the authorisation behind an operator registration.
    ///
    /// # Errors
    /// [`Error::Store`]; a UNIQUE violation (see [`is_unique_violation`]) when the same
    /// authorisation (by digest) was already used.
    pub async fn insert_operator_authorisation(
        &self,
        conn: &mut AnyConnection,
        row: &OperatorAuthorisationRow,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO operator_authorisations (registration_id, digest, signer_serial, id_number_hash, cms, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.registration_id)
        .bind(&row.digest)
        .bind(&row.signer_serial)
        .bind(&row.id_number_hash)
        .bind(&row.cms_base64)
        .bind(row.created_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The registration an authorisation (by digest) was used for, if any.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn authorisation_use(&self, digest: &str) -> Result<Option<String>, Error> {
        let row = sqlx::query("SELECT registration_id FROM operator_authorisations WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// A registration by id.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn registration(&self, conn: &mut AnyConnection, id: &str) -> Result<Option<RegistrationRow>, Error> {
        let row = sqlx::query(
            "SELECT id, kind, identifier, name, legal_representative, person_name, profile, status, \
             approvals_needed, created_by, created_at, updated_at FROM registrations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|r| registration_row(&r, 0)).transpose()?)
    }

    /// Bumps `updated_at`, which on PostgreSQL also locks the row until the transaction ends
    /// (so that concurrent approvals of one registration are serialised). Returns whether the
    /// registration exists.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn touch_registration(&self, conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, Error> {
        let done = sqlx::query("UPDATE registrations SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets a registration's status.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn set_registration_status(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        status: &str,
        now: i64,
    ) -> Result<(), Error> {
        sqlx::query(SET_REGISTRATION_STATUS).bind(status).bind(now).bind(id).execute(&mut *conn).await?;
        Ok(())
    }

    /// The officers (subjects) who approved a registration, in order.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn approvals(&self, conn: &mut AnyConnection, id: &str) -> Result<Vec<String>, Error> {
        let rows =
            sqlx::query("SELECT officer FROM approvals WHERE registration_id = $1 ORDER BY approved_at, officer")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
        rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(Error::from)
    }

    /// Records an approval. The UNIQUE (registration, officer) key refuses a second approval
    /// by the same officer; that surfaces as an error for which [`is_unique_violation`] holds.
    ///
    /// # Errors
    /// [`Error::Store`]; the raw sqlx error is kept in the `Err` of the inner result.
    pub async fn insert_approval(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        officer: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO approvals (registration_id, officer, approved_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(officer)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    // ---- enrolment codes -----------------------------------------------------------------

    /// Stores the code of a registration (one per registration).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn insert_code(&self, conn: &mut AnyConnection, row: &CodeRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO enrolment_codes (registration_id, code_hash, created_at, expires_at, attempts) \
             VALUES ($1, $2, $3, $4, 0)",
        )
        .bind(&row.registration_id)
        .bind(&row.code_hash)
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The code of a registration.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn code(&self, registration_id: &str) -> Result<Option<CodeRow>, Error> {
        let mut conn = self.pool.acquire().await?;
        self.code_in(&mut conn, registration_id).await
    }

    /// What an enrolment checks before it claims a code, in one statement: until when
    /// `source` is locked out (if it is at `now`), and the code of a registration with the
    /// registration itself (`None` if its row is gone).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn code_with_registration(
        &self,
        registration_id: &str,
        source: &str,
        now: i64,
    ) -> Result<CodeCheck, Error> {
        let r = sqlx::query(
            "SELECT (SELECT l.locked_until FROM lockouts l WHERE l.identity = $1 AND l.locked_until > $2), \
             c.registration_id, c.code_hash, c.created_at, c.expires_at, c.attempts, c.used_at, c.serial, \
             r.id, r.kind, r.identifier, r.name, r.legal_representative, r.person_name, r.profile, r.status, \
             r.approvals_needed, r.created_by, r.created_at, r.updated_at \
             FROM (SELECT 1 AS probe) AS probe \
             LEFT JOIN enrolment_codes c ON c.registration_id = $3 \
             LEFT JOIN registrations r ON r.id = c.registration_id",
        )
        .bind(source)
        .bind(now)
        .bind(registration_id)
        .fetch_one(&self.pool)
        .await?;
        let locked_until = r.try_get::<Option<i64>, _>(0)?;
        if r.try_get::<Option<String>, _>(1)?.is_none() {
            return Ok((locked_until, None));
        }
        let registration = match r.try_get::<Option<String>, _>(8)? {
            Some(_) => Some(registration_row(&r, 8)?),
            None => None,
        };
        Ok((locked_until, Some((code_row(&r, 1)?, registration))))
    }

    /// Counts a wrong code against a registration's code (committed at once).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn add_code_attempt(&self, registration_id: &str) -> Result<(), Error> {
        sqlx::query("UPDATE enrolment_codes SET attempts = attempts + 1 WHERE registration_id = $1")
            .bind(registration_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claims an unused, unexpired code with attempts left for an enrolment; `false` when it
    /// is no longer claimable (a concurrent enrolment won, or it expired meanwhile).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn claim_code(
        &self,
        conn: &mut AnyConnection,
        registration_id: &str,
        now: i64,
        max_attempts: i64,
    ) -> Result<bool, Error> {
        let done =
            sqlx::query(CLAIM_CODE).bind(now).bind(registration_id).bind(max_attempts).execute(&mut *conn).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a claimed code back after an issuance that failed on the CA's side.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn release_code(&self, registration_id: &str) -> Result<(), Error> {
        sqlx::query("UPDATE enrolment_codes SET used_at = NULL WHERE registration_id = $1 AND serial IS NULL")
            .bind(registration_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records which certificate a code was used for.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn set_code_serial(
        &self,
        conn: &mut AnyConnection,
        registration_id: &str,
        serial: &str,
    ) -> Result<(), Error> {
        sqlx::query(SET_CODE_SERIAL).bind(serial).bind(registration_id).execute(&mut *conn).await?;
        Ok(())
    }

    // ---- certificates --------------------------------------------------------------------

    /// Reserves a serial: inserts the row with status `issuing`. A serial that was ever
    /// reserved cannot be reserved again (primary key), whatever became of it.
    ///
    /// # Errors
    /// The sqlx error; [`is_unique_violation`] tells a taken serial.
    pub async fn reserve_serial(
        &self,
        conn: &mut AnyConnection,
        cert: &NewCertificate,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        insert_certificate(conn, cert, "issuing", None, now, false).await.map(|_| ())
    }

    /// Records a certificate issued by the key ceremony (status `good`), inside the
    /// ceremony's single transaction.
    ///
    /// # Errors
    /// [`Error::Store`], including for a serial that exists.
    pub async fn insert_ceremony_certificate(
        &self,
        conn: &mut AnyConnection,
        cert: &NewCertificate,
        der: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        insert_certificate(conn, cert, "good", Some(der), now, false).await?;
        Ok(())
    }

    /// Marks a reserved serial issued with its certificate; `false` when the row was not
    /// `issuing` (abandoned meanwhile by a recovery).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn mark_issued(
        &self,
        conn: &mut AnyConnection,
        serial: &str,
        der: &[u8],
        now: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(MARK_ISSUED).bind(der).bind(now).bind(serial).execute(&mut *conn).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a reserved serial abandoned (never issued, never reused).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn mark_abandoned(&self, serial: &str, now: i64) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE certificates SET status = 'abandoned', updated_at = $1 WHERE serial = $2 AND status = 'issuing'",
        )
        .bind(now)
        .bind(serial)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that the `Issue` audit records of `serials` are committed (see migration 4), in
    /// one statement.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn clear_audit_pending(&self, serials: &[String]) -> Result<(), Error> {
        if serials.is_empty() {
            return Ok(());
        }
        // Only placeholders carry values; the SQL text is built from constants.
        let placeholders = (1..=serials.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql =
            format!("UPDATE certificates SET audit_pending = 0 WHERE audit_pending = 1 AND serial IN ({placeholders})");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for serial in serials {
            query = query.bind(serial);
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// The serials marked issued whose `Issue` audit record was not known to be committed (by
    /// a crash, or by an issuance still running).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn audit_pending_serials(&self) -> Result<Vec<String>, Error> {
        let rows = sqlx::query("SELECT serial FROM certificates WHERE audit_pending = 1 ORDER BY serial")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(Error::from)
    }

    /// Takes back an issuance whose certificate was never released because its `Issue` audit
    /// record is missing: in one transaction, the row (still `good` with its record pending)
    /// becomes `abandoned`, and if the registration's enrolment code was used for this serial,
    /// the code is given back and the registration is `approved` again. `false` (nothing
    /// written) when the row is not in that state.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn unissue(&self, serial: &str, now: i64) -> Result<bool, Error> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE certificates SET status = 'abandoned', audit_pending = 0, updated_at = $1 \
             WHERE serial = $2 AND status = 'good' AND audit_pending = 1 RETURNING registration_id",
        )
        .bind(now)
        .bind(serial)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        if let Some(registration_id) = row.try_get::<Option<String>, _>(0)? {
            let code = sqlx::query(
                "UPDATE enrolment_codes SET used_at = NULL, serial = NULL WHERE registration_id = $1 AND serial = $2",
            )
            .bind(&registration_id)
            .bind(serial)
            .execute(&mut *tx)
            .await?;
            if code.rows_affected() == 1 {
                sqlx::query(
                    "UPDATE registrations SET status = 'approved', updated_at = $1 WHERE id = $2 AND status = 'enrolled'",
                )
                .bind(now)
                .bind(&registration_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The serials left `issuing` (by a crash, or by an issuance still running elsewhere).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn issuing_serials(&self) -> Result<Vec<String>, Error> {
        let rows = sqlx::query("SELECT serial FROM certificates WHERE status = 'issuing' ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(Error::from)
    }

    /// A certificate by serial (lowercase hex).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateRow>, Error> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(serial).fetch_optional(&self.pool).await?;
        row.as_ref().map(certificate_row).transpose().map_err(Error::from)
    }

    /// Certificates matching `filter`, newest first. Reserved and abandoned serials are listed
    /// only when asked for by status or serial.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn list_certificates(&self, filter: &ListFilter) -> Result<Vec<CertificateRow>, Error> {
        // Only placeholders carry values; the SQL text is built from constants.
        let mut sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE 1 = 1");
        let mut values: Vec<String> = Vec::new();
        for (column, value) in [("uscc", &filter.uscc), ("status", &filter.status), ("serial", &filter.serial)] {
            if let Some(value) = value {
                values.push(value.clone());
                sql.push_str(&format!(" AND {column} = ${}", values.len()));
            }
        }
        if filter.status.is_none() && filter.serial.is_none() {
            sql.push_str(" AND status IN ('good', 'revoked', 'hold')");
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, serial LIMIT ${}", values.len() + 1));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in values {
            query = query.bind(value);
        }
        let rows = query.bind(filter.limit).fetch_all(&self.pool).await?;
        rows.iter().map(certificate_row).collect::<Result<_, _>>().map_err(Error::from)
    }

    /// Moves a certificate from one of `from` to `to`, setting the revocation time and reason
    /// (cleared with `None`). Returns whether a row changed.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn change_status(
        &self,
        conn: &mut AnyConnection,
        serial: &str,
        from: &[&'static str],
        to: &'static str,
        revocation: Option<(i64, i64)>,
        now: i64,
    ) -> Result<bool, Error> {
        let from_list = from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        // `from` and `to` are compile-time constants of this crate; values go in placeholders.
        let sql = format!(
            "UPDATE certificates SET status = $1, revoked_at = $2, revocation_reason = $3, updated_at = $4 \
             WHERE serial = $5 AND status IN ({from_list})"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to)
            .bind(revocation.map(|(at, _)| at))
            .bind(revocation.map(|(_, reason)| reason))
            .bind(now)
            .bind(serial)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The revoked and held certificates of an issuer that have not expired at `now`, by serial.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn revoked_entries(
        &self,
        conn: &mut AnyConnection,
        issuer: &str,
        now: i64,
    ) -> Result<Vec<RevokedRow>, Error> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates WHERE issuer = $1 \
             AND status IN ('revoked', 'hold') AND not_after >= $2 ORDER BY serial",
        )
        .bind(issuer)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedRow {
                    serial: r.try_get(0)?,
                    revoked_at: r.try_get::<Option<i64>, _>(1)?.unwrap_or(0),
                    reason: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    // ---- CRLs ----------------------------------------------------------------------------

    /// Increments and returns the issuer's cRLNumber, inside the caller's transaction (which
    /// also stores the CRL), so a number is used once and only by a stored CRL.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::NotFound`] for an issuer without a counter.
    pub async fn next_crl_number(&self, conn: &mut AnyConnection, issuer: &str) -> Result<i64, Error> {
        let row =
            sqlx::query("UPDATE crl_numbers SET last_number = last_number + 1 WHERE issuer = $1 RETURNING last_number")
                .bind(issuer)
                .fetch_optional(&mut *conn)
                .await?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(Error::NotFound { what: format!("cRLNumber counter of issuer {issuer}") }),
        }
    }

    /// Stores the issuer's latest CRL.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn store_crl(&self, conn: &mut AnyConnection, issuer: &str, crl: &CrlRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO crls (issuer, number, this_update, next_update, der) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (issuer) DO UPDATE SET number = excluded.number, this_update = excluded.this_update, \
             next_update = excluded.next_update, der = excluded.der",
        )
        .bind(issuer)
        .bind(crl.number)
        .bind(crl.this_update)
        .bind(crl.next_update)
        .bind(&crl.der)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The issuer's latest CRL.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn latest_crl(&self, issuer: &str) -> Result<Option<CrlRow>, Error> {
        let row = sqlx::query("SELECT number, this_update, next_update, der FROM crls WHERE issuer = $1")
            .bind(issuer)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(CrlRow {
                number: r.try_get(0)?,
                this_update: r.try_get(1)?,
                next_update: r.try_get(2)?,
                der: r.try_get(3)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| Error::from(e))
    }

    // ---- authentication failures and lockouts --------------------------------------------

    /// Records an authentication failure and returns how many failures the identity has had
    /// since `since` (including this one) and after its last lock ended.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn add_auth_failure(&self, identity: &str, now: i64, since: i64, reason: &str) -> Result<i64, Error> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO auth_failures (identity, at, reason) VALUES ($1, $2, $3)")
            .bind(identity)
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        let last_lock = sqlx::query("SELECT locked_until FROM lockouts WHERE identity = $1")
            .bind(identity)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(i64::MIN);
        let row = sqlx::query("SELECT COUNT(*) FROM auth_failures WHERE identity = $1 AND at >= $2")
            .bind(identity)
            .bind(since.max(last_lock))
            .fetch_one(&mut *tx)
            .await?;
        let count: i64 = row.try_get(0)?;
        tx.commit().await?;
        Ok(count)
    }

    /// Locks an identity until `until` (Unix seconds).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn lock(&self, identity: &str, until: i64) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO lockouts (identity, locked_until) VALUES ($1, $2) \
             ON CONFLICT (identity) DO UPDATE SET locked_until = excluded.locked_until",
        )
        .bind(identity)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the identity's lock ends, if it is locked at `now`.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn locked_until(&self, identity: &str, now: i64) -> Result<Option<i64>, Error> {
        let row = sqlx::query("SELECT locked_until FROM lockouts WHERE identity = $1 AND locked_until > $2")
            .bind(identity)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}

/// A [`RegistrationRow`] from the columns of `registration()`, starting at column `at`.
fn registration_row(r: &AnyRow, at: usize) -> Result<RegistrationRow, sqlx::Error> {
    Ok(RegistrationRow {
        id: r.try_get(at)?,
        kind: r.try_get(at + 1)?,
        identifier: r.try_get(at + 2)?,
        name: r.try_get(at + 3)?,
        legal_representative: r.try_get(at + 4)?,
        person_name: r.try_get(at + 5)?,
        profile: r.try_get(at + 6)?,
        status: r.try_get(at + 7)?,
        approvals_needed: r.try_get(at + 8)?,
        created_by: r.try_get(at + 9)?,
        created_at: r.try_get(at + 10)?,
        updated_at: r.try_get(at + 11)?,
    })
}

/// A [`CodeRow`] from the columns of `code_in()`, starting at column `at`.
fn code_row(r: &AnyRow, at: usize) -> Result<CodeRow, sqlx::Error> {
    Ok(CodeRow {
        registration_id: r.try_get(at)?,
        code_hash: r.try_get(at + 1)?,
        created_at: r.try_get(at + 2)?,
        expires_at: r.try_get(at + 3)?,
        attempts: r.try_get(at + 4)?,
        used_at: r.try_get(at + 5)?,
        serial: r.try_get(at + 6)?,
    })
}

fn certificate_row(r: &AnyRow) -> Result<CertificateRow, sqlx::Error> {
    Ok(CertificateRow {
        serial: r.try_get(0)?,
        issuer: r.try_get(1)?,
        subject: r.try_get(2)?,
        profile: r.try_get(3)?,
        registration_id: r.try_get(4)?,
        uscc: r.try_get(5)?,
        not_before: r.try_get(6)?,
        not_after: r.try_get(7)?,
        status: r.try_get(8)?,
        revoked_at: r.try_get(9)?,
        revocation_reason: r.try_get(10)?,
        der: r.try_get(11)?,
        created_at: r.try_get(12)?,
        updated_at: r.try_get(13)?,
    })
}

/// The one INSERT of a certificate row: a reservation (`issuing`, no DER yet) or a ceremony
/// certificate (`good`, with its DER). A serial that exists is a unique violation, or with
/// `if_free` no row and `false` (which leaves a shared transaction usable on PostgreSQL).
async fn insert_certificate(
    conn: &mut AnyConnection,
    cert: &NewCertificate,
    status: &str,
    der: Option<&[u8]>,
    now: i64,
    if_free: bool,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(if if_free { INSERT_CERTIFICATE_IF_FREE } else { INSERT_CERTIFICATE })
        .bind(&cert.serial)
        .bind(&cert.issuer)
        .bind(&cert.subject)
        .bind(&cert.profile)
        .bind(cert.registration_id.clone())
        .bind(cert.uscc.clone())
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(status)
        .bind(der.map(<[u8]>::to_vec))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
