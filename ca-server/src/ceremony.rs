//! The key ceremony (`eport-ca init`): creates everything a CA needs, once.
//!
//! For each algorithm (P-256 and SM2): a root (profile `root-ca`), an issuing CA
//! (`issuing-ca`), a delegated OCSP signer (`ocsp-signer`) and a TSA certificate (`tsa`),
//! all through [`policies::issue`] (linted before the real key signs), plus a root CRL (ARL)
//! signed by the root key, valid for a year. Then the HTTPS server certificate (`tls-server`,
//! P-256 only: rustls has no SM2 cipher suites), and the bootstrap administrators
//! `system-admin`, `security-officer-1`, `security-officer-2` and `audit-officer` (profile
//! `officer`, P-256), each written as `DIR/bootstrap/<name>.crt` and `<name>.key` (PKCS#8
//! encrypted with a generated passphrase in `<name>.pass`, all mode 0600) and registered in
//! the identities table with its one role. There are no default passwords.
//!
//! Every step is audited in a new audit log whose heads a dedicated `audit` key signs: each
//! key generated (`KeyGenerate`), each certificate issued (`Issue`, after signing and before
//! the database records it), the root CRLs (`CrlIssued`).
//!
//! The ceremony refuses a data directory that holds a CA or the remains of an interrupted
//! ceremony (`.init.lock`, `keys/`, `bootstrap/`): an interrupted ceremony is redone from an
//! empty directory (and an empty database), never resumed. Its database writes are one
//! transaction; the marker file `initialised` is written last.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use der::Encode;
use policies::{IssueRequest, IssuerUrls, OfficerRole, Profile, Profiles, SubjectData};
use signer_lib::audit::{Actor, AuditLog, AuditRecord, EventType, HashAlgorithm};
use signer_lib::key::software::{KeyFormat, SoftwareKey};
use signer_lib::{SignatureAlgorithm, Signer};
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::clock::{Clock, SystemClock, unix_millis, whole_seconds};
use crate::config::Config;
use crate::crl::{self};
use crate::keys::{KeyInfo, KeyStore, create_private_dir, random_passphrase, write_new_file, write_private_file};
use crate::service::{MARKER, Role, urls_for, validity};
use crate::store::{IdentityRow, IssuerRow, NewCertificate, Store};
use crate::{Ca, Error};

/// The audit actor of the ceremony.
pub const CEREMONY_ACTOR: &str = "eport-ca-init";

/// How long the root CRLs (ARLs) the ceremony signs are valid: the root key is offline, so
/// its CRL is re-signed offline with `eport-ca root-crl` ([`crate::root_crl`]) before then.
pub const ROOT_CRL_DAYS: i64 = 365;

/// The bootstrap administrators: name and role.
pub const BOOTSTRAP: [(&str, OfficerRole); 4] = [
    ("system-admin", OfficerRole::System),
    ("security-officer-1", OfficerRole::Security),
    ("security-officer-2", OfficerRole::Security),
    ("audit-officer", OfficerRole::Audit),
];

/// What the ceremony made; `Display` is what `eport-ca init` prints.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The CA database (credentials removed).
    pub database: String,
    /// The audit log (credentials removed) and its hash.
    pub audit_log: String,
    /// The base URL in the AIA and CRL distribution point extensions.
    pub public_base_url: String,
    /// Every key, where it lives.
    pub keys: Vec<KeyInfo>,
    /// The hierarchies.
    pub issuers: Vec<IssuerReport>,
    /// The HTTPS server certificate chain (PEM).
    pub tls_server_certificate: PathBuf,
    /// Its DNS names.
    pub tls_dns_names: Vec<String>,
    /// The bootstrap administrators.
    pub bootstrap: Vec<BootstrapIdentity>,
}

/// One hierarchy the ceremony made.
#[derive(Clone, Debug)]
pub struct IssuerReport {
    /// `p256` or `sm2`.
    pub id: String,
    /// (subject, serial hex, PEM file) of the root.
    pub root: (String, String, PathBuf),
    /// Of the issuing CA.
    pub issuing: (String, String, PathBuf),
    /// Of the OCSP signer.
    pub ocsp: (String, String, PathBuf),
    /// Of the TSA.
    pub tsa: (String, String, PathBuf),
    /// The root CRL file.
    pub root_crl: PathBuf,
}

/// One bootstrap administrator.
#[derive(Clone, Debug)]
pub struct BootstrapIdentity {
    /// `security-officer-1`, ...
    pub name: String,
    /// The role.
    pub role: Role,
    /// The certificate subject.
    pub subject: String,
    /// The certificate serial, hex.
    pub serial_hex: String,
    /// `<data>/bootstrap/<name>.crt`.
    pub certificate: PathBuf,
    /// `<data>/bootstrap/<name>.key` (encrypted PKCS#8).
    pub key: PathBuf,
    /// `<data>/bootstrap/<name>.pass`.
    pub passphrase_file: PathBuf,
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "eport-ca: key ceremony complete in {}", self.data_dir.display())?;
        writeln!(f, "  database:   {}", self.database)?;
        writeln!(f, "  audit log:  {}", self.audit_log)?;
        writeln!(f, "  public URLs under {} (AIA, CRL distribution points)", self.public_base_url)?;
        writeln!(f, "keys:")?;
        for key in &self.keys {
            let how = if key.generated { "generated" } else { "existing" };
            writeln!(f, "  {:<13} {:<8} {how:<9} {}", key.name, key.algorithm.name(), key.location)?;
        }
        for issuer in &self.issuers {
            writeln!(f, "hierarchy {}:", issuer.id)?;
            for (what, (subject, serial, path)) in [
                ("root", &issuer.root),
                ("issuing CA", &issuer.issuing),
                ("OCSP signer", &issuer.ocsp),
                ("TSA", &issuer.tsa),
            ] {
                writeln!(f, "  {what:<11} {subject}  serial {serial}  {}", path.display())?;
            }
            writeln!(f, "  root CRL    {}", issuer.root_crl.display())?;
        }
        writeln!(
            f,
            "HTTPS server certificate (P-256; rustls has no SM2): {} for {}",
            self.tls_server_certificate.display(),
            self.tls_dns_names.join(", ")
        )?;
        writeln!(f, "bootstrap administrators (certificate, encrypted key, passphrase file; all mode 0600):")?;
        for id in &self.bootstrap {
            writeln!(f, "  {:<19} {:<21} {}", id.name, id.role.name(), id.certificate.display())?;
            writeln!(f, "  {:<19} {:<21} {}", "", "", id.key.display())?;
            writeln!(f, "  {:<19} {:<21} {}", "", "", id.passphrase_file.display())?;
        }
        writeln!(f, "Hand each bootstrap identity to its holder (move it onto a token), then delete its .pass file.")?;
        write!(
            f,
            "Software CA keys with passphrase files are for development; production keys live on a token or HSM \
             ([keys] file = an hsm-config file)."
        )
    }
}

/// What the ceremony collects for the one database transaction.
struct Pending {
    issuers: Vec<IssuerRow>,
    certificates: Vec<(NewCertificate, Vec<u8>)>,
    identities: Vec<IdentityRow>,
}

/// The ceremony's working state.
struct Ceremony<'a> {
    data_dir: &'a Path,
    config: &'a Config,
    keys: KeyStore,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    profiles: Profiles,
    report_keys: Vec<KeyInfo>,
}

impl Ca {
    /// Runs the key ceremony in `data_dir` (see the module documentation) with the system
    /// clock.
    ///
    /// # Errors
    /// As [`Self::init_with_clock`].
    pub async fn init(data_dir: &Path, config: &Config) -> Result<InitReport, Error> {
        Self::init_with_clock(data_dir, config, Arc::new(SystemClock)).await
    }

    /// Runs the key ceremony in `data_dir` with `clock`.
    ///
    /// # Errors
    /// [`Error::AlreadyInitialised`] for a directory or database that holds a CA or an
    /// interrupted ceremony; [`Error::Key`], [`Error::Io`], [`Error::Store`],
    /// [`Error::AuditUnavailable`], [`Error::Internal`] when a step fails.
    pub async fn init_with_clock(data_dir: &Path, config: &Config, clock: Arc<dyn Clock>) -> Result<InitReport, Error> {
        let already = || Error::AlreadyInitialised { data_dir: data_dir.to_owned() };
        if Self::is_initialised(data_dir) || ["keys", "bootstrap", "certs"].iter().any(|d| data_dir.join(d).exists()) {
            return Err(already());
        }
        create_private_dir(data_dir)?;
        let lock = data_dir.join(".init.lock");
        write_private_file(
            &lock,
            b"eport-ca init is running or was interrupted; start again from an empty directory\n",
        )
        .map_err(|_| already())?;

        let keys = KeyStore::new(data_dir, config)?;
        let database_url = config.database_url(data_dir);
        let store = Store::connect(&database_url, config.database.max_connections.get(), true).await?;
        if !store.issuers().await?.is_empty() {
            return Err(already());
        }

        let hash = config.audit.hash.algorithm();
        let audit_algorithm = match hash {
            HashAlgorithm::Sm3 => SignatureAlgorithm::Sm2Sm3,
            _ => SignatureAlgorithm::EcdsaP256Sha256,
        };
        let (audit_key, audit_info) = keys.create("audit", audit_algorithm)?;
        let audit_url = config.audit_url(data_dir);
        let audit = AuditLog::create(&audit_url, audit_key, hash, &config.audit.origin)
            .await
            .map_err(|e| Error::AuditUnavailable(format!("cannot create the audit log: {e}")))?;
        let profiles = Profiles::embedded().map_err(|e| Error::internal("profiles", e))?;
        let mut ceremony = Ceremony { data_dir, config, keys, audit, clock, profiles, report_keys: Vec::new() };
        ceremony.record(EventType::KeyGenerate, "audit").await?;
        ceremony.report_keys.push(audit_info);

        let result = ceremony.run(&store).await;
        ceremony.audit.close().await;
        store.close().await;
        let mut report = result?;
        report.database = redact(&database_url);
        report.audit_log = format!("{} ({})", redact(&audit_url), hash.name());

        write_private_file(&data_dir.join(MARKER), report.to_string().as_bytes())?;
        std::fs::remove_file(&lock).map_err(|e| Error::io(&lock, e))?;

        // The first CRLs, through the service, so they carry the same cRLNumber sequence.
        let ca = Self::open_with_clock(data_dir, config, Arc::clone(&ceremony.clock)).await?;
        let crls = ca.regenerate_crls().await;
        ca.close().await;
        crls?;
        Ok(report)
    }
}

impl Ceremony<'_> {
    fn now(&self) -> OffsetDateTime {
        whole_seconds(self.clock.now())
    }

    fn profile(&self, id: &str) -> Result<&Profile, Error> {
        self.profiles.get(id).map_err(|e| Error::internal("profile", e))
    }

    /// Appends a ceremony record; a failure stops the ceremony.
    async fn record(&self, event: EventType, object: &str) -> Result<(), Error> {
        let record = AuditRecord::new(unix_millis(self.clock.now()), Actor::account(CEREMONY_ACTOR), event)
            .role(signer_lib::audit::Role::System)
            .object(object);
        self.audit.append(&record).await.map(|_| ()).map_err(|e| Error::AuditUnavailable(e.to_string()))
    }

    /// Makes key `name`, audited.
    async fn key(&mut self, name: &str, algorithm: SignatureAlgorithm) -> Result<Arc<dyn Signer>, Error> {
        let (signer, info) = self.keys.create(name, algorithm)?;
        self.record(EventType::KeyGenerate, name).await?;
        self.report_keys.push(info);
        Ok(signer)
    }

    /// Issues a certificate (linted first), audited after signing.
    async fn issue(
        &self,
        profile_id: &str,
        subject: SubjectData,
        subject_key: &dyn Signer,
        issuer: Option<(&Certificate, &dyn Signer)>,
        urls: IssuerUrls,
    ) -> Result<Certificate, Error> {
        let profile = self.profile(profile_id)?;
        let now = self.now();
        let (not_before, not_after) = validity(now, profile, issuer.map(|(c, _)| c));
        let request = IssueRequest {
            profile,
            subject,
            subject_spki_der: subject_key.public_key_der().to_vec(),
            not_before,
            not_after,
            serial: policies::random_serial(),
            urls,
        };
        let (issuer_cert, issuer_key) = match issuer {
            Some((cert, key)) => (Some(cert), key),
            None => (None, subject_key),
        };
        let certificate = policies::issue(issuer_cert, issuer_key, &request, now).map_err(|e| match e {
            policies::Error::Lint(findings) => Error::Lint(findings),
            other => Error::internal(profile_id, other),
        })?;
        self.record(EventType::Issue, &serial_hex(&certificate)).await?;
        Ok(certificate)
    }

    async fn run(&mut self, store: &Store) -> Result<InitReport, Error> {
        let data_dir = self.data_dir;
        let certs_dir = data_dir.join("certs");
        let crl_dir = data_dir.join("crl");
        let bootstrap_dir = data_dir.join("bootstrap");
        for dir in [&certs_dir, &crl_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        create_private_dir(&bootstrap_dir)?;
        let base = self.config.public_base_url();
        let org = self.config.ceremony.organization.clone();
        let authority = |cn: String| SubjectData::Authority { organization: org.clone(), common_name: cn };
        let now = self.now().unix_timestamp();
        let mut pending = Pending { issuers: Vec::new(), certificates: Vec::new(), identities: Vec::new() };
        let mut issuer_reports = Vec::new();
        let mut p256: Option<(Certificate, Certificate, Arc<dyn Signer>)> = None;

        for (id, algorithm, label) in
            [("p256", SignatureAlgorithm::EcdsaP256Sha256, "P-256"), ("sm2", SignatureAlgorithm::Sm2Sm3, "SM2")]
        {
            let root_key = self.key(&format!("root-{id}"), algorithm).await?;
            let root = self
                .issue("root-ca", authority(format!("{org} Root CA {label}")), &*root_key, None, IssuerUrls::default())
                .await?;
            let root_urls = IssuerUrls {
                ocsp: None,
                ca_issuers: Some(format!("{base}/ca/{id}-root.crt")),
                crl: Some(format!("{base}/crl/{id}-root.crl")),
            };
            let issuing_key = self.key(&format!("issuing-{id}"), algorithm).await?;
            let issuing = self
                .issue(
                    "issuing-ca",
                    authority(format!("{org} Issuing CA {label}")),
                    &*issuing_key,
                    Some((&root, &*root_key)),
                    root_urls,
                )
                .await?;
            let urls = urls_for(&base, id);
            let ocsp_key = self.key(&format!("ocsp-{id}"), algorithm).await?;
            let ocsp = self
                .issue(
                    "ocsp-signer",
                    authority(format!("{org} OCSP Responder {label}")),
                    &*ocsp_key,
                    Some((&issuing, &*issuing_key)),
                    IssuerUrls::default(),
                )
                .await?;
            let tsa_key = self.key(&format!("tsa-{id}"), algorithm).await?;
            let tsa = self
                .issue(
                    "tsa",
                    authority(format!("{org} TSA {label}")),
                    &*tsa_key,
                    Some((&issuing, &*issuing_key)),
                    urls.clone(),
                )
                .await?;

            // The root's CRL (ARL): no issuing CA is revoked.
            let this_update = self.now();
            let arl =
                crl::build(&root, &*root_key, 1, this_update, this_update + time::Duration::days(ROOT_CRL_DAYS), &[])?;
            let root_crl = crl_dir.join(format!("{id}-root.crl"));
            write_new_file(&root_crl, &arl.to_der().map_err(|e| Error::internal("root CRL", e))?, 0o644)?;
            self.record(EventType::CrlIssued, &format!("{id}-root crl 1")).await?;

            let mut files = Vec::new();
            for (what, cert) in [("root", &root), ("issuing", &issuing), ("ocsp", &ocsp), ("tsa", &tsa)] {
                let path = certs_dir.join(format!("{id}-{what}.pem"));
                write_new_file(&path, pem(cert)?.as_bytes(), 0o644)?;
                files.push((cert.tbs_certificate.subject.to_string(), serial_hex(cert), path));
            }
            let mut files = files.into_iter();
            let mut next = || files.next().ok_or_else(|| Error::Internal("ceremony file list".into()));
            issuer_reports.push(IssuerReport {
                id: id.to_owned(),
                root: next()?,
                issuing: next()?,
                ocsp: next()?,
                tsa: next()?,
                root_crl,
            });

            for (profile, cert) in [("ocsp-signer", &ocsp), ("tsa", &tsa)] {
                pending.certificates.push(crate::admin::certificate_row(id, profile, cert)?);
            }
            pending.issuers.push(IssuerRow {
                id: id.to_owned(),
                algorithm: algorithm.name().to_owned(),
                root_der: der(&root)?,
                issuing_der: der(&issuing)?,
                issuing_key: format!("issuing-{id}"),
                ocsp_der: der(&ocsp)?,
                ocsp_key: format!("ocsp-{id}"),
                tsa_der: der(&tsa)?,
                tsa_key: format!("tsa-{id}"),
                created_at: now,
            });
            if id == "p256" {
                p256 = Some((root, issuing, issuing_key));
            }
        }
        let (p256_root, p256_issuing, p256_key) =
            p256.ok_or_else(|| Error::Internal("the P-256 hierarchy was not made".into()))?;
        let urls = urls_for(&base, "p256");

        // The HTTPS server certificate.
        let dns_names = self.config.ceremony.tls_dns_names.clone();
        let tls_key = self.key("tls-server", SignatureAlgorithm::EcdsaP256Sha256).await?;
        let common_name = dns_names.first().cloned().unwrap_or_default();
        let tls = self
            .issue(
                "tls-server",
                SubjectData::Platform { common_name, dns_names: dns_names.clone() },
                &*tls_key,
                Some((&p256_issuing, &*p256_key)),
                urls.clone(),
            )
            .await?;
        let tls_path = certs_dir.join("tls-server.pem");
        let chain = [pem(&tls)?, pem(&p256_issuing)?, pem(&p256_root)?].concat();
        write_new_file(&tls_path, chain.as_bytes(), 0o644)?;
        pending.certificates.push(crate::admin::certificate_row("p256", "tls-server", &tls)?);

        // The bootstrap administrators.
        let mut bootstrap = Vec::new();
        for (name, officer_role) in BOOTSTRAP {
            let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256)
                .map_err(|e| Error::Key { name: format!("bootstrap/{name}"), reason: e.to_string() })?;
            self.record(EventType::KeyGenerate, &format!("bootstrap/{name}")).await?;
            let cert = self
                .issue(
                    "officer",
                    SubjectData::Officer { name: name.to_owned(), role: officer_role },
                    &key,
                    Some((&p256_issuing, &*p256_key)),
                    urls.clone(),
                )
                .await?;
            let passphrase = random_passphrase();
            let (crt_path, key_path, pass_path) = (
                bootstrap_dir.join(format!("{name}.crt")),
                bootstrap_dir.join(format!("{name}.key")),
                bootstrap_dir.join(format!("{name}.pass")),
            );
            write_private_file(&pass_path, passphrase.as_bytes())?;
            key.save(&key_path, Some(passphrase.as_bytes()), KeyFormat::Pem)
                .map_err(|e| Error::Key { name: format!("bootstrap/{name}"), reason: e.to_string() })?;
            write_private_file(&crt_path, pem(&cert)?.as_bytes())?;
            let role = match officer_role {
                OfficerRole::System => Role::SystemAdministrator,
                OfficerRole::Security => Role::SecurityOfficer,
                OfficerRole::Audit => Role::AuditOfficer,
            };
            let subject = cert.tbs_certificate.subject.to_string();
            pending.identities.push(IdentityRow {
                name: name.to_owned(),
                subject: subject.clone(),
                serial: serial_hex(&cert),
                role: role.name().to_owned(),
                created_at: now,
            });
            pending.certificates.push(crate::admin::certificate_row("p256", "officer", &cert)?);
            bootstrap.push(BootstrapIdentity {
                name: name.to_owned(),
                role,
                subject,
                serial_hex: serial_hex(&cert),
                certificate: crt_path,
                key: key_path,
                passphrase_file: pass_path,
            });
        }

        // One transaction for everything the database learns.
        let mut tx = store.begin().await?;
        for row in &pending.issuers {
            store.insert_issuer(&mut tx, row).await?;
        }
        for (cert, der) in &pending.certificates {
            store.insert_ceremony_certificate(&mut tx, cert, der, now).await?;
        }
        for identity in &pending.identities {
            store.insert_identity(&mut tx, identity).await?;
        }
        tx.commit().await?;
        self.audit.sign_head().await.map_err(|e| Error::AuditUnavailable(e.to_string()))?;

        Ok(InitReport {
            data_dir: data_dir.to_owned(),
            database: String::new(),
            audit_log: String::new(),
            public_base_url: base,
            keys: self.report_keys.clone(),
            issuers: issuer_reports,
            tls_server_certificate: tls_path,
            tls_dns_names: dns_names,
            bootstrap,
        })
    }
}

fn serial_hex(cert: &Certificate) -> String {
    hex::encode(cert.tbs_certificate.serial_number.as_bytes())
}

fn der(cert: &Certificate) -> Result<Vec<u8>, Error> {
    cert.to_der().map_err(|e| Error::internal("certificate", e))
}

fn pem(cert: &Certificate) -> Result<String, Error> {
    signer_lib::certificate::to_pem(cert).map_err(|e| Error::internal("PEM", e))
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_database_passwords() {
        assert_eq!(redact("postgres://ca:secret@db/ca"), "postgres://ca:***@db/ca");
        assert_eq!(redact("postgres://ca@db/ca"), "postgres://ca@db/ca");
        assert_eq!(redact("sqlite:/var/lib/ca.db"), "sqlite:/var/lib/ca.db");
    }
}
