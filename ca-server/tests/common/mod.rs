//! Shared fixtures: one suite, two databases. Every test runs against SQLite and, when
//! `EPORT_TEST_POSTGRES_URL` is set, PostgreSQL (a fresh database per test, created through
//! that URL and dropped afterwards). Without the variable the PostgreSQL half is skipped with a
//! notice, unless `CI` is set, in which case the test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ca_server::{Ca, Caller, Config, ManualClock};
use signer_lib::SignatureAlgorithm;
use signer_lib::key::software::SoftwareKey;
use sqlx::Connection as _;
use tempfile::TempDir;
use time::OffsetDateTime;

/// The variable naming the PostgreSQL server tests may create databases on.
pub const POSTGRES_ENV: &str = "EPORT_TEST_POSTGRES_URL";

/// A valid unified social credit code (the policies crate's test code).
pub const USCC: &str = "91350100M000100Y43";

/// A database the test owns.
#[derive(Debug)]
pub struct Backend {
    /// `sqlite` or `postgres`.
    pub name: &'static str,
    /// The CA database URL (None: the embedded default under the data directory).
    pub database_url: Option<String>,
    /// The audit log URL (None: the embedded default).
    pub audit_url: Option<String>,
    /// For PostgreSQL: (admin URL, database name) to drop afterwards.
    drop: Option<(String, String)>,
}

impl Backend {
    /// Drops the test's PostgreSQL database (best effort).
    pub async fn cleanup(&self) {
        if let Some((admin, name)) = &self.drop {
            sqlx::any::install_default_drivers();
            if let Ok(mut conn) = sqlx::AnyConnection::connect(admin).await {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
            }
        }
    }
}

/// SQLite always; PostgreSQL when configured (see the module documentation).
pub async fn backends() -> Vec<Backend> {
    let mut list = vec![sqlite()];
    match std::env::var(POSTGRES_ENV) {
        Ok(base) if !base.is_empty() => list.push(postgres(&base).await),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{POSTGRES_ENV} is not set, and CI is: the PostgreSQL half of the suite must run in CI")
        }
        _ => eprintln!("notice: {POSTGRES_ENV} is not set; skipping the PostgreSQL half of this test"),
    }
    list
}

/// SQLite only, for tests of outputs that do not depend on the database.
pub fn sqlite() -> Backend {
    Backend { name: "sqlite", database_url: None, audit_url: None, drop: None }
}

/// A fresh database on the server of `base`.
async fn postgres(base: &str) -> Backend {
    sqlx::any::install_default_drivers();
    let name = format!("eport_ca_test_{}", hex::encode(rand_bytes::<6>()));
    let mut admin = sqlx::AnyConnection::connect(base).await.unwrap_or_else(|e| panic!("{POSTGRES_ENV}={base}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let url = with_database(base, &name);
    Backend {
        name: "postgres",
        database_url: Some(url.clone()),
        audit_url: Some(url),
        drop: Some((base.to_owned(), name)),
    }
}

/// `base` with its database name replaced by `name`.
pub fn with_database(base: &str, name: &str) -> String {
    let (before_query, query) = base.split_once('?').map_or((base, None), |(b, q)| (b, Some(q)));
    let scheme_end = before_query.find("://").map_or(0, |i| i + 3);
    let path_start = before_query[scheme_end..].find('/').map_or(before_query.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &before_query[..path_start]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// One random byte.
pub fn rand_byte() -> u8 {
    rand_bytes::<1>()[0]
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore as _;
    let mut b = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

/// A configuration for `backend`.
pub fn config_for(backend: &Backend) -> Config {
    let mut config = Config::default();
    config.database.url.clone_from(&backend.database_url);
    config.audit.url.clone_from(&backend.audit_url);
    config
}

/// An initialised CA on a moveable clock, with the bootstrap officers identified.
pub struct Fixture {
    pub dir: TempDir,
    pub config: Config,
    pub clock: Arc<ManualClock>,
    pub ca: Ca,
    pub security1: Caller,
    pub security2: Caller,
    pub audit: Caller,
    pub admin: Caller,
}

impl Fixture {
    /// Runs the ceremony and opens the CA.
    pub async fn new(backend: &Backend) -> Self {
        Self::with_config(backend, config_for(backend)).await
    }

    /// Runs the ceremony with `config` and opens the CA.
    pub async fn with_config(_backend: &Backend, config: Config) -> Self {
        let dir = TempDir::new().unwrap();
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        Ca::init_with_clock(dir.path(), &config, clock.clone()).await.unwrap();
        let ca = Ca::open_with_clock(dir.path(), &config, clock.clone()).await.unwrap();
        let officer = |name: &str| {
            let pem = std::fs::read(dir.path().join("bootstrap").join(format!("{name}.crt"))).unwrap();
            let cert = signer_lib::certificate::parse(&pem).unwrap();
            der::Encode::to_der(&cert).unwrap()
        };
        let source = Some(SocketAddr::from(([127, 0, 0, 1], 40000)));
        let security1 = ca.identify(&officer("security-officer-1"), source, "t-sec1").await.unwrap();
        let security2 = ca.identify(&officer("security-officer-2"), source, "t-sec2").await.unwrap();
        let audit = ca.identify(&officer("audit-officer"), source, "t-audit").await.unwrap();
        let admin = ca.identify(&officer("system-admin"), source, "t-admin").await.unwrap();
        Self { dir, config, clock, ca, security1, security2, audit, admin }
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    /// An anonymous caller from `ip`.
    pub fn anonymous(ip: [u8; 4]) -> Caller {
        Caller::anonymous(Some(SocketAddr::from((ip, 50000))), "t-anon")
    }

    /// Registers an enterprise (legal representative) and approves it; returns (id, code).
    pub async fn approved_enterprise(&self) -> (String, String) {
        let reg = self
            .ca
            .register(
                &self.security1,
                ca_server::RegistrationRequest::Enterprise {
                    uscc: USCC.into(),
                    name: "福州示例进出口有限公司".into(),
                    legal_representative: "张三".into(),
                    person_name: None,
                    profile: "enterprise-legal-rep".into(),
                    authorisation: None,
                },
            )
            .await
            .unwrap();
        match self.ca.approve(&self.security1, &reg.id).await.unwrap() {
            ca_server::Approval::Code { code, .. } => (reg.id, code),
            other => panic!("single control should give a code, got {other:?}"),
        }
    }

    /// Registers an agency and has both security officers approve it; returns (id, code).
    pub async fn approved_agency(&self) -> (String, String) {
        let reg = self
            .ca
            .register(
                &self.security1,
                ca_server::RegistrationRequest::Agency {
                    agency_code: "CUSTOMS-3501".into(),
                    name: "福州海关（示例）".into(),
                    profile: "agency".into(),
                },
            )
            .await
            .unwrap();
        assert!(matches!(
            self.ca.approve(&self.security1, &reg.id).await.unwrap(),
            ca_server::Approval::Pending { .. }
        ));
        match self.ca.approve(&self.security2, &reg.id).await.unwrap() {
            ca_server::Approval::Code { code, .. } => (reg.id, code),
            other => panic!("second approval should give a code, got {other:?}"),
        }
    }

    /// Closes the CA.
    pub async fn close(self, backend: &Backend) {
        self.ca.close().await;
        backend.cleanup().await;
    }
}

/// A fresh key and a CSR (PEM) signed by it.
pub fn csr(algorithm: SignatureAlgorithm) -> (SoftwareKey, String) {
    let key = SoftwareKey::generate(algorithm).unwrap();
    let req = signer_lib::csr::build(&key, "CN=Ignored Subject,O=Whatever,C=US").unwrap();
    (key, signer_lib::csr::to_pem(&req).unwrap())
}

/// A CSR made by `openssl req` for a new key of `newkey` (`rsa:1024`, `ec -pkeyopt ...`).
pub fn openssl_csr(dir: &Path, args: &[&str]) -> String {
    let out = dir.join(format!("req-{}.pem", hex::encode(rand_bytes::<4>())));
    let key = dir.join(format!("key-{}.pem", hex::encode(rand_bytes::<4>())));
    let status = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", "/CN=openssl/C=CN", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(status.status.success(), "openssl req: {}", String::from_utf8_lossy(&status.stderr));
    std::fs::read_to_string(out).unwrap()
}

/// Parses a PEM certificate.
pub fn cert(pem: &str) -> x509_cert::Certificate {
    signer_lib::certificate::parse(pem.as_bytes()).unwrap()
}

/// The DER of a PEM certificate.
pub fn der_of(pem: &str) -> Vec<u8> {
    der::Encode::to_der(&cert(pem)).unwrap()
}

/// Runs `openssl` with `args` in `dir`; (success, stdout + stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
