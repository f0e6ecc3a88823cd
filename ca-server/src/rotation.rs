//! Rotating the delegated OCSP signers and the HTTPS server certificate:
//! `eport-ca rotate ocsp-signer --data DIR [--config FILE]` and
//! `eport-ca rotate tls --data DIR [--config FILE]`.
//!
//! OCSP signer certificates are short-lived (profile `ocsp-signer`: 90 days at most, so that a
//! compromised responder key — which relying parties never check, id-pkix-ocsp-nocheck — ages
//! out quickly); rotate them well before they expire, e.g. monthly. Each rotation makes a new
//! *generation*: a new key on the configured backend, named `<key>-g<N>` (`ocsp-p256-g2`,
//! `tls-server-g2`; see [`crate::keys::generation_name`]), a new certificate linted and signed
//! by the issuing CA, and a new file `<data>/certs/<id>-ocsp-g<N>.pem` /
//! `<data>/certs/tls-server-g<N>.pem`. Nothing is overwritten: the superseded key and
//! certificate stay where they are (the old OCSP signer certificate stays valid until it
//! expires), and the `key_rotations` table records which generation replaced which.
//!
//! The next `serve` start uses the newest generation: the OCSP responder reads
//! `issuers.ocsp_der` and `ocsp_key`, which a rotation updates, and the HTTPS listener takes
//! the latest `tls-server` rotation ([`current_tls`]). A standalone `eport-ocsp` reads the same
//! columns; its keys file needs an entry for the new key name.
//!
//! With an hsm-config keys file, a new generation of a software key is generated beside the
//! old one (same passphrase variable) unless the file names it; a token or HSM key must be
//! generated on the device beforehand and named in the keys file (`[keys.ocsp-p256-g2]`).
//!
//! Audited: `KeyGenerate` (the key), `Issue` (the certificate, after signing), then
//! `OcspSignerChanged` (OCSP) or `ConfigurationChanged` (HTTPS) inside the transaction that
//! makes the new generation current.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use policies::{IssuerUrls, SubjectData};
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::EventType;
use time::OffsetDateTime;

use crate::admin::{self, Admin};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::{KeyInfo, generation_name, write_new_file};
use crate::service::urls_for;
use crate::store::{Purpose, RotationRow, Store};
use crate::{Ca, Error};

/// The ceremony's HTTPS server certificate chain, under `<data>/certs/`.
pub const TLS_FILE: &str = "tls-server.pem";

/// The ceremony's HTTPS server key.
pub const TLS_KEY: &str = "tls-server";

/// What one rotation made; `Display` is what `eport-ca rotate` prints per certificate.
#[derive(Clone, Debug)]
pub struct Rotated {
    /// `ocsp-signer` or `tls-server`.
    pub purpose: &'static str,
    /// The issuing CA (`p256`, `sm2`).
    pub issuer: String,
    /// The new generation (2, 3, ...).
    pub generation: i64,
    /// The new key.
    pub key: KeyInfo,
    /// The new certificate's subject.
    pub subject: String,
    /// Its serial, hex.
    pub serial_hex: String,
    /// Its notAfter.
    pub not_after: OffsetDateTime,
    /// Its file.
    pub certificate: PathBuf,
    /// The serial of the certificate it supersedes (kept, not revoked).
    pub superseded_serial: String,
    /// The superseded certificate's file (kept).
    pub superseded_file: PathBuf,
    /// The superseded key's name (kept).
    pub superseded_key: String,
}

/// What `eport-ca rotate` made.
#[derive(Clone, Debug)]
pub struct RotationReport {
    /// One entry per certificate.
    pub rotated: Vec<Rotated>,
}

impl fmt::Display for RotationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rotated {
            writeln!(f, "{} {} generation {}:", r.purpose, r.issuer, r.generation)?;
            writeln!(f, "  subject     {}", r.subject)?;
            writeln!(f, "  serial      {}", r.serial_hex)?;
            writeln!(f, "  notAfter    {}", admin::rfc3339(r.not_after))?;
            writeln!(f, "  certificate {}", r.certificate.display())?;
            let how = if r.key.generated { "generated" } else { "existing" };
            writeln!(f, "  key         {} ({} {how}, {})", r.key.name, r.key.algorithm.name(), r.key.location)?;
            writeln!(
                f,
                "  supersedes  serial {} ({}, key {}; kept)",
                r.superseded_serial,
                r.superseded_file.display(),
                r.superseded_key
            )?;
        }
        write!(f, "The new certificates are used from the next `eport-ca serve` start.")
    }
}

impl Ca {
    /// Rotates every issuing CA's OCSP signer (see the module documentation), with the
    /// system clock.
    ///
    /// # Errors
    /// As [`Self::rotate_ocsp_signers_with_clock`].
    pub async fn rotate_ocsp_signers(data_dir: &Path, config: &Config) -> Result<RotationReport, Error> {
        Self::rotate_ocsp_signers_with_clock(data_dir, config, Arc::new(SystemClock)).await
    }

    /// Rotates every issuing CA's OCSP signer with `clock`.
    ///
    /// # Errors
    /// [`Error::NotInitialised`]; [`Error::Key`] when a key cannot be made or opened (a device
    /// key not named in the keys file) or is the CA key; [`Error::Lint`]; [`Error::Conflict`]
    /// when another rotation made the same generation meanwhile; [`Error::Io`],
    /// [`Error::Store`], [`Error::AuditUnavailable`].
    pub async fn rotate_ocsp_signers_with_clock(
        data_dir: &Path,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<RotationReport, Error> {
        let admin = Admin::open(data_dir, config, clock).await?;
        let result = async {
            let mut rotated = Vec::new();
            for row in admin.store.issuers().await? {
                rotated.push(rotate_ocsp_signer(&admin, &row.id).await?);
            }
            Ok::<_, Error>(RotationReport { rotated })
        }
        .await;
        let closed = admin.close().await;
        let report = result?;
        closed?;
        Ok(report)
    }

    /// Rotates the HTTPS server certificate and key (see the module documentation), with the
    /// system clock. The DNS names are the configuration's `ceremony.tls_dns_names`.
    ///
    /// # Errors
    /// As [`Self::rotate_tls_with_clock`].
    pub async fn rotate_tls(data_dir: &Path, config: &Config) -> Result<RotationReport, Error> {
        Self::rotate_tls_with_clock(data_dir, config, Arc::new(SystemClock)).await
    }

    /// Rotates the HTTPS server certificate and key with `clock`.
    ///
    /// # Errors
    /// As [`Self::rotate_ocsp_signers_with_clock`].
    pub async fn rotate_tls_with_clock(
        data_dir: &Path,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<RotationReport, Error> {
        let admin = Admin::open(data_dir, config, clock).await?;
        let result = rotate_tls(&admin).await;
        let closed = admin.close().await;
        let rotated = result?;
        closed?;
        Ok(RotationReport { rotated: vec![rotated] })
    }
}

/// The HTTPS server certificate chain file (under `<data>/certs/`) and key name in use: the
/// latest rotation's, else the ceremony's.
///
/// # Errors
/// [`Error::Store`].
pub(crate) async fn current_tls(store: &Store) -> Result<(String, String), Error> {
    Ok(match store.latest_rotation(Purpose::TlsServer, "p256").await? {
        Some(row) => (row.certificate_file, row.key_name),
        None => (TLS_FILE.to_owned(), TLS_KEY.to_owned()),
    })
}

/// The next generation of `purpose` for `issuer`, its key name and its certificate file:
/// one past the latest recorded, skipping any whose key or certificate file is already there
/// (the remains of an interrupted rotation, which are never reused or overwritten).
async fn next_generation(
    admin: &Admin,
    purpose: Purpose,
    issuer: &str,
    base_key: &str,
    file: impl Fn(i64) -> String,
) -> Result<(Option<RotationRow>, i64, String, String), Error> {
    let previous = admin.store.latest_rotation(purpose, issuer).await?;
    let mut generation = previous.as_ref().map_or(2, |p| p.generation + 1);
    let certs = admin.data_dir.join("certs");
    while certs.join(file(generation)).exists() || admin.keys.file_exists(&generation_name(base_key, generation)) {
        generation += 1;
    }
    Ok((previous, generation, generation_name(base_key, generation), file(generation)))
}

/// The words the ceremony uses for an algorithm in subject names.
fn label(algorithm: SignatureAlgorithm) -> &'static str {
    match algorithm {
        SignatureAlgorithm::EcdsaP256Sha256 => "P-256",
        SignatureAlgorithm::Sm2Sm3 => "SM2",
        other => other.name(),
    }
}

async fn rotate_ocsp_signer(admin: &Admin, id: &str) -> Result<Rotated, Error> {
    let row = admin.issuer_row(id).await?;
    let (ca, ca_key) = admin.issuing(&row)?;
    let algorithm = ca_key.algorithm();
    let (previous, generation, key_name, file) =
        next_generation(admin, Purpose::OcspSigner, id, &format!("ocsp-{id}"), |g| format!("{id}-ocsp-g{g}.pem"))
            .await?;
    let old = signer_lib::certificate::parse(&row.ocsp_der).map_err(|e| Error::internal("OCSP signer", e))?;
    let superseded_file = previous.map_or_else(|| format!("{id}-ocsp.pem"), |p| p.certificate_file);

    let (key, info) = admin.keys.create(&key_name, algorithm)?;
    admin.record(EventType::KeyGenerate, &key_name).await?;
    if key.public_key_der() == ca_key.public_key_der() {
        return Err(Error::Key { name: key_name, reason: "the OCSP signer must not be the CA key".into() });
    }
    let org = admin.config.ceremony.organization.clone();
    let subject = SubjectData::Authority {
        organization: org.clone(),
        common_name: format!("{org} OCSP Responder {} G{generation}", label(algorithm)),
    };
    let cert = admin
        .issue("ocsp-signer", subject, key.public_key_der().to_vec(), (&ca, &ca_key), IssuerUrls::default())
        .await?;
    let path = admin.data_dir.join("certs").join(&file);
    write_new_file(&path, admin::pem(&cert)?.as_bytes(), 0o644)?;

    let rotation = RotationRow {
        purpose: Purpose::OcspSigner,
        issuer: id.to_owned(),
        generation,
        key_name: key_name.clone(),
        serial: admin::serial_hex(&cert),
        certificate_file: file,
        superseded_serial: admin::serial_hex(&old),
        superseded_key: row.ocsp_key.clone(),
        superseded_file,
        rotated_at: admin.now().unix_timestamp(),
    };
    let (new_row, der) = admin::certificate_row(id, "ocsp-signer", &cert)?;
    let mut tx = admin.store.begin().await?;
    admin.store.insert_ceremony_certificate(&mut tx, &new_row, &der, rotation.rotated_at).await?;
    admin.store.set_ocsp_signer(&mut tx, id, &der, &key_name).await?;
    admin.store.insert_rotation(&mut tx, &rotation).await?;
    admin
        .record(
            EventType::OcspSignerChanged,
            &format!(
                "{id}: {} ({}) replaces {} ({})",
                rotation.serial, key_name, rotation.superseded_serial, row.ocsp_key
            ),
        )
        .await?;
    tx.commit().await?;
    Ok(report(&admin.data_dir, rotation, info, &cert))
}

async fn rotate_tls(admin: &Admin) -> Result<Rotated, Error> {
    let row = admin.issuer_row("p256").await?;
    let (ca, ca_key) = admin.issuing(&row)?;
    let (previous, generation, key_name, file) =
        next_generation(admin, Purpose::TlsServer, "p256", TLS_KEY, |g| format!("tls-server-g{g}.pem")).await?;
    let (superseded_file, superseded_key) =
        previous.map_or_else(|| (TLS_FILE.to_owned(), TLS_KEY.to_owned()), |p| (p.certificate_file, p.key_name));
    let old_path = admin.data_dir.join("certs").join(&superseded_file);
    let old_chain = std::fs::read(&old_path).map_err(|e| Error::io(&old_path, e))?;
    let old = signer_lib::certificate::parse_chain(&old_chain)
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .ok_or_else(|| Error::Internal(format!("{} holds no certificate", old_path.display())))?;

    let dns_names = admin.config.ceremony.tls_dns_names.clone();
    let common_name = dns_names.first().cloned().unwrap_or_default();
    let (key, info) = admin.keys.create(&key_name, SignatureAlgorithm::EcdsaP256Sha256)?;
    admin.record(EventType::KeyGenerate, &key_name).await?;
    let subject = SubjectData::Platform { common_name, dns_names };
    let urls = urls_for(&admin.config.public_base_url(), "p256");
    let cert = admin.issue("tls-server", subject, key.public_key_der().to_vec(), (&ca, &ca_key), urls).await?;
    let root = signer_lib::certificate::parse(&row.root_der).map_err(|e| Error::internal("root CA", e))?;
    let chain = [admin::pem(&cert)?, admin::pem(&ca)?, admin::pem(&root)?].concat();
    let path = admin.data_dir.join("certs").join(&file);
    write_new_file(&path, chain.as_bytes(), 0o644)?;

    let rotation = RotationRow {
        purpose: Purpose::TlsServer,
        issuer: "p256".to_owned(),
        generation,
        key_name: key_name.clone(),
        serial: admin::serial_hex(&cert),
        certificate_file: file,
        superseded_serial: admin::serial_hex(&old),
        superseded_key,
        superseded_file,
        rotated_at: admin.now().unix_timestamp(),
    };
    let (new_row, der) = admin::certificate_row("p256", "tls-server", &cert)?;
    let mut tx = admin.store.begin().await?;
    admin.store.insert_ceremony_certificate(&mut tx, &new_row, &der, rotation.rotated_at).await?;
    admin.store.insert_rotation(&mut tx, &rotation).await?;
    admin
        .record(
            EventType::ConfigurationChanged,
            &format!(
                "HTTPS server certificate: {} ({}, {}) replaces {} ({})",
                rotation.serial,
                key_name,
                rotation.certificate_file,
                rotation.superseded_serial,
                rotation.superseded_key
            ),
        )
        .await?;
    tx.commit().await?;
    Ok(report(&admin.data_dir, rotation, info, &cert))
}

fn report(data_dir: &Path, rotation: RotationRow, key: KeyInfo, cert: &x509_cert::Certificate) -> Rotated {
    let certs = data_dir.join("certs");
    Rotated {
        purpose: rotation.purpose.name(),
        issuer: rotation.issuer,
        generation: rotation.generation,
        key,
        subject: cert.tbs_certificate.subject.to_string(),
        serial_hex: rotation.serial,
        not_after: admin::not_after(cert),
        certificate: certs.join(rotation.certificate_file),
        superseded_serial: rotation.superseded_serial,
        superseded_file: certs.join(rotation.superseded_file),
        superseded_key: rotation.superseded_key,
    }
}
