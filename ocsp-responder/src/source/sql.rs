//! The CA database as a [`StatusSource`]: read-only queries against ca-server's
//! `certificates` and `issuers` tables (ca-server/migrations, SQLite or PostgreSQL through
//! sqlx's `Any` driver).
//!
//! All SQL is in [`queries`], the one place to change should the CA schema move.
//!
//! # Mapping
//! `certificates.status`: `good` → good; `revoked` → revoked at `revoked_at` with the
//! RFC 5280 reason code `revocation_reason` (0, unspecified, is left out as RFC 5280 §5.3.1
//! advises); `hold` → revoked with certificateHold; `issuing` (reserved, not yet released to
//! the subscriber) and `abandoned` → never issued, so `unknown`. Serials are looked up as the
//! lowercase hex of the DER INTEGER's content octets and, should that differ, without the sign
//! octet.
//!
//! # Change feed and its bound
//! The CA bumps `updated_at` (Unix seconds, the CA's clock) in the transaction of every status
//! change. The cursor is the highest `updated_at` seen; each poll re-reads from `cursor −
//! overlap`, so a change is seen by the first poll after it commits as long as its transaction
//! committed within `overlap` (default 60 s) of stamping `updated_at`, and CA hosts' clocks
//! agree within the same margin. Re-read rows are harmless (the responder re-signs only a
//! status that differs from what it holds). Anything slower is still caught by the responder's
//! refresh pass, which re-reads every status each `refresh_interval`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use time::OffsetDateTime;
use x509_cert::ext::pkix::CrlReason;

use super::{BoxFuture, CertificateStatus, ChangeCursor, Changes, IssuerId, Serial, StatusSource};
use crate::Error;

/// The SQL, against ca-server's schema (migrations/sqlite and migrations/postgres, version 1).
/// `$n` placeholders work on both SQLite and PostgreSQL.
pub mod queries {
    /// One certificate's status: issuer id, then the serial in two spellings (with and without
    /// the sign octet; equal for almost every serial).
    pub const STATUS: &str = "SELECT status, revoked_at, revocation_reason, updated_at FROM certificates \
                              WHERE issuer = $1 AND serial IN ($2, $3)";
    /// Every issued certificate of an issuer not expired at $2 (Unix seconds).
    pub const ALL_SERIALS: &str = "SELECT serial, status, revoked_at, revocation_reason, updated_at FROM certificates \
                                   WHERE issuer = $1 AND status IN ('good', 'revoked', 'hold') AND not_after >= $2";
    /// The change feed's high-water mark now.
    pub const CURSOR: &str = "SELECT COALESCE(MAX(updated_at), 0) FROM certificates";
    /// Changes at or after $1 (Unix seconds).
    pub const CHANGED: &str = "SELECT issuer, serial, updated_at FROM certificates WHERE updated_at >= $1";
    /// An issuer's issuing CA certificate, OCSP signer certificate and OCSP key name.
    pub const ISSUER: &str = "SELECT issuing_der, ocsp_der, ocsp_key FROM issuers WHERE id = $1";
}

/// What the CA database holds about one issuer's OCSP signer (written by the key ceremony).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRecord {
    /// The issuing CA certificate, DER.
    pub issuing_der: Vec<u8>,
    /// The delegated OCSP signer certificate, DER.
    pub ocsp_der: Vec<u8>,
    /// The name of the OCSP signer's key in the key configuration.
    pub ocsp_key: String,
}

/// Certificate status read from the CA database.
#[derive(Clone, Debug)]
pub struct SqlSource {
    pool: AnyPool,
    overlap: Duration,
}

/// How far back each poll re-reads by default (see the module documentation).
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(60);

impl SqlSource {
    /// Over an existing pool (ca-server's own, when the responder runs in its process).
    #[must_use]
    pub fn new(pool: AnyPool) -> Self {
        Self { pool, overlap: DEFAULT_OVERLAP }
    }

    /// With a different re-read window for the change feed.
    #[must_use]
    pub fn with_overlap(mut self, overlap: Duration) -> Self {
        self.overlap = overlap;
        self
    }

    /// Connects to the CA database at `url` (`sqlite:…` or `postgres://…`). A SQLite file is
    /// opened read-only unless the URL says otherwise; for PostgreSQL use a role that may only
    /// SELECT from `certificates` and `issuers` (or a replica).
    ///
    /// # Errors
    /// [`Error::Store`] for another scheme or when the database cannot be reached.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") {
            format!("{url}{}mode=ro", if url.contains('?') { '&' } else { '?' })
        } else if sqlite || url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.to_owned()
        } else {
            return Err(Error::Store("the database URL must start with sqlite: or postgres://".into()));
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| Error::Store(format!("bad database URL: {e}")))?;
        let mut pool = AnyPoolOptions::new().max_connections(max_connections.max(1));
        if sqlite {
            pool = pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // The CA writes while we read: wait for its locks rather than fail.
                    sqlx::raw_sql("PRAGMA busy_timeout = 30000").execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let pool =
            pool.connect_with(options).await.map_err(|e| Error::Store(format!("cannot open the CA database: {e}")))?;
        Ok(Self::new(pool))
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The issuer's certificates and OCSP key name as the ceremony recorded them.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn issuer_record(&self, issuer: &IssuerId) -> Result<Option<IssuerRecord>, Error> {
        let row = sqlx::query(queries::ISSUER).bind(&issuer.0).fetch_optional(&self.pool).await.map_err(store)?;
        row.map(|r| {
            Ok(IssuerRecord {
                issuing_der: r.try_get(0).map_err(store)?,
                ocsp_der: r.try_get(1).map_err(store)?,
                ocsp_key: r.try_get(2).map_err(store)?,
            })
        })
        .transpose()
    }
}

fn store(e: sqlx::Error) -> Error {
    Error::Store(e.to_string())
}

/// The status in a row of (status, revoked_at, revocation_reason, updated_at) starting at
/// column `first`.
fn status_of(row: &AnyRow, first: usize) -> Result<CertificateStatus, Error> {
    let status: String = row.try_get(first).map_err(store)?;
    let revoked_at: Option<i64> = row.try_get(first + 1).map_err(store)?;
    let reason: Option<i64> = row.try_get(first + 2).map_err(store)?;
    let updated_at: i64 = row.try_get(first + 3).map_err(store)?;
    let time = || {
        let at = revoked_at.unwrap_or(updated_at);
        OffsetDateTime::from_unix_timestamp(at).map_err(|e| Error::Store(format!("revocation time {at}: {e}")))
    };
    Ok(match status.as_str() {
        "good" => CertificateStatus::Good,
        "revoked" => CertificateStatus::Revoked { time: time()?, reason: reason.and_then(crl_reason) },
        "hold" => CertificateStatus::Hold { time: time()? },
        _ => CertificateStatus::NotIssued,
    })
}

/// An RFC 5280 CRLReason code; 0 (unspecified) and unknown codes give no reason.
fn crl_reason(code: i64) -> Option<CrlReason> {
    Some(match code {
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        8 => CrlReason::RemoveFromCRL,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => return None,
    })
}

impl StatusSource for SqlSource {
    fn status<'a>(
        &'a self,
        issuer: &'a IssuerId,
        serial: &'a Serial,
    ) -> BoxFuture<'a, Result<CertificateStatus, Error>> {
        Box::pin(async move {
            let row = sqlx::query(queries::STATUS)
                .bind(&issuer.0)
                .bind(serial.to_der_hex())
                .bind(serial.to_hex())
                .fetch_optional(&self.pool)
                .await
                .map_err(store)?;
            row.map_or(Ok(CertificateStatus::NotIssued), |r| status_of(&r, 0))
        })
    }

    fn all_serials<'a>(
        &'a self,
        issuer: &'a IssuerId,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Vec<(Serial, CertificateStatus)>, Error>> {
        Box::pin(async move {
            let rows = sqlx::query(queries::ALL_SERIALS)
                .bind(&issuer.0)
                .bind(now.unix_timestamp())
                .fetch_all(&self.pool)
                .await
                .map_err(store)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let serial: String = row.try_get(0).map_err(store)?;
                match Serial::from_hex(&serial) {
                    Ok(serial) => out.push((serial, status_of(row, 1)?)),
                    Err(e) => tracing::warn!(issuer = %issuer, "skipping certificate: {e}"),
                }
            }
            Ok(out)
        })
    }

    fn current_cursor(&self) -> BoxFuture<'_, Result<ChangeCursor, Error>> {
        Box::pin(async move {
            let row = sqlx::query(queries::CURSOR).fetch_one(&self.pool).await.map_err(store)?;
            Ok(ChangeCursor(row.try_get::<i64, _>(0).map_err(store)?))
        })
    }

    fn changed_since(&self, cursor: ChangeCursor) -> BoxFuture<'_, Result<Changes, Error>> {
        Box::pin(async move {
            let overlap = i64::try_from(self.overlap.as_secs()).unwrap_or(i64::MAX);
            let rows = sqlx::query(queries::CHANGED)
                .bind(cursor.0.saturating_sub(overlap))
                .fetch_all(&self.pool)
                .await
                .map_err(store)?;
            let mut changes = Changes { changed: Vec::with_capacity(rows.len()), next: cursor };
            for row in &rows {
                let issuer: String = row.try_get(0).map_err(store)?;
                let serial: String = row.try_get(1).map_err(store)?;
                let updated_at: i64 = row.try_get(2).map_err(store)?;
                changes.next = changes.next.max(ChangeCursor(updated_at));
                if let Ok(serial) = Serial::from_hex(&serial) {
                    changes.changed.push((IssuerId(issuer), serial));
                }
            }
            Ok(changes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_reason_codes_leaving_out_unspecified() {
        assert_eq!(crl_reason(0), None);
        assert_eq!(crl_reason(1), Some(CrlReason::KeyCompromise));
        assert_eq!(crl_reason(7), None);
        assert_eq!(crl_reason(10), Some(CrlReason::AaCompromise));
    }
}
