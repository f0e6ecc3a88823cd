//! Key rotations (`key_rotations`, migration 3) and the administrator identities the offline
//! commands look up by name.

use sqlx::{AnyConnection, Row};

use super::{IdentityRow, Store};
use crate::Error;

/// What a rotation replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// An issuing CA's delegated OCSP signer (profile `ocsp-signer`).
    OcspSigner,
    /// The HTTPS server certificate (profile `tls-server`).
    TlsServer,
}

impl Purpose {
    /// The name in the `purpose` column, which is also the profile id.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::OcspSigner => "ocsp-signer",
            Self::TlsServer => "tls-server",
        }
    }
}

/// One generation of an OCSP signer or HTTPS server certificate made by a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationRow {
    /// What was rotated.
    pub purpose: Purpose,
    /// The issuing CA (`p256`, `sm2`; `p256` for the HTTPS server certificate).
    pub issuer: String,
    /// 2, 3, ...: the ceremony made generation 1.
    pub generation: i64,
    /// The new key's name (`ocsp-p256-g2`).
    pub key_name: String,
    /// The new certificate's serial (lowercase hex).
    pub serial: String,
    /// The new certificate's file name under `<data>/certs/`.
    pub certificate_file: String,
    /// The serial of the certificate it replaced.
    pub superseded_serial: String,
    /// The key of the certificate it replaced.
    pub superseded_key: String,
    /// The file of the certificate it replaced, under `<data>/certs/` (kept).
    pub superseded_file: String,
    /// Unix seconds.
    pub rotated_at: i64,
}

const COLUMNS: &str = "purpose, issuer, generation, key_name, serial, certificate_file, superseded_serial, \
                       superseded_key, superseded_file, rotated_at";

impl Store {
    /// The latest rotation of `purpose` for `issuer`, `None` while the ceremony's generation 1
    /// is current.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn latest_rotation(&self, purpose: Purpose, issuer: &str) -> Result<Option<RotationRow>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM key_rotations WHERE purpose = $1 AND issuer = $2 ORDER BY generation DESC LIMIT 1"
        );
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(purpose.name()).bind(issuer).fetch_optional(self.pool()).await?;
        row.map(|r| {
            Ok(RotationRow {
                purpose,
                issuer: r.try_get(1)?,
                generation: r.try_get(2)?,
                key_name: r.try_get(3)?,
                serial: r.try_get(4)?,
                certificate_file: r.try_get(5)?,
                superseded_serial: r.try_get(6)?,
                superseded_key: r.try_get(7)?,
                superseded_file: r.try_get(8)?,
                rotated_at: r.try_get(9)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| Error::from(e))
    }

    /// Records a rotation. The (purpose, issuer, generation) key refuses a generation made
    /// twice (two rotations racing).
    ///
    /// # Errors
    /// [`Error::Conflict`] for a generation that exists; [`Error::Store`].
    pub async fn insert_rotation(&self, conn: &mut AnyConnection, row: &RotationRow) -> Result<(), Error> {
        let sql = format!("INSERT INTO key_rotations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(row.purpose.name())
            .bind(&row.issuer)
            .bind(row.generation)
            .bind(&row.key_name)
            .bind(&row.serial)
            .bind(&row.certificate_file)
            .bind(&row.superseded_serial)
            .bind(&row.superseded_key)
            .bind(&row.superseded_file)
            .bind(row.rotated_at)
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                if super::is_unique_violation(&e) {
                    Error::Conflict {
                        what: format!(
                            "generation {} of the {} of {} exists (another rotation ran meanwhile)",
                            row.generation,
                            row.purpose.name(),
                            row.issuer
                        ),
                    }
                } else {
                    Error::from(e)
                }
            })?;
        Ok(())
    }

    /// Makes a rotated OCSP signer current: the issuer's `ocsp_der` and `ocsp_key`, which the
    /// in-process and the standalone OCSP responders read when they start.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown issuer; [`Error::Store`].
    pub async fn set_ocsp_signer(
        &self,
        conn: &mut AnyConnection,
        issuer: &str,
        ocsp_der: &[u8],
        ocsp_key: &str,
    ) -> Result<(), Error> {
        let done = sqlx::query("UPDATE issuers SET ocsp_der = $1, ocsp_key = $2 WHERE id = $3")
            .bind(ocsp_der)
            .bind(ocsp_key)
            .bind(issuer)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 1 { Ok(()) } else { Err(Error::NotFound { what: format!("issuer {issuer}") }) }
    }

    /// The administrator identity called `name`.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn identity_by_name(&self, name: &str) -> Result<Option<IdentityRow>, Error> {
        let row = sqlx::query("SELECT name, subject, serial, role, created_at FROM identities WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
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
}
