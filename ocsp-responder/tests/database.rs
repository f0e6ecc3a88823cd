//! The CA database as the status source: ca-server's own migration (read from
//! ../ca-server/migrations, so a schema change there breaks this test, not production)
//! applied to SQLite — and to PostgreSQL when `EPORT_TEST_POSTGRES_URL` is set — rows written
//! the way ca-server writes them, the responder built from a configuration file with
//! `config::build` (certificates and key name from the `issuers` row), and the standalone
//! binary `eport-ocsp serve` answering `openssl ocsp`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{cert_id, pki, request, serial_of, write_pem};
use der::Encode;
use ocsp_responder::config::{self, Config};
use ocsp_responder::metrics::{Origin, Outcome};
use ocsp_responder::source::sql::SqlSource;
use ocsp_responder::{CertIdHash, CertificateStatus, IssuerId, StatusSource};
use signer_lib::SignatureAlgorithm;
use signer_lib::key::software::KeyFormat;
use sqlx::AnyPool;
use time::OffsetDateTime;

fn migration(dialect: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../ca-server/migrations/{dialect}/0001_initial.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn admin_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap()
}

/// Rows as ca-server writes them: the issuer, and leaves 0 good, 1 revoked (keyCompromise),
/// 2 on hold, 3 reserved but never released ('issuing').
async fn populate(pool: &AnyPool, p: &common::Pki) {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    sqlx::query(
        "INSERT INTO issuers (id, algorithm, root_der, issuing_der, issuing_key, ocsp_der, ocsp_key, tsa_der, tsa_key, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&p.id.0)
    .bind("p256")
    .bind(p.root.to_der().unwrap())
    .bind(p.issuing.to_der().unwrap())
    .bind("issuing-p256")
    .bind(p.responder_cert.to_der().unwrap())
    .bind("ocsp-p256")
    .bind(p.responder_cert.to_der().unwrap())
    .bind("tsa-p256")
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    let rows: [(usize, &str, Option<i64>, Option<i64>); 4] = [
        (0, "good", None, None),
        (1, "revoked", Some(1_704_067_200), Some(1)),
        (2, "hold", Some(1_704_067_200), Some(6)),
        (3, "issuing", None, None),
    ];
    for (leaf, status, revoked_at, reason) in rows {
        let cert = &p.leaves[leaf];
        let not_before = i64::try_from(cert.tbs_certificate.validity.not_before.to_unix_duration().as_secs()).unwrap();
        let not_after = i64::try_from(cert.tbs_certificate.validity.not_after.to_unix_duration().as_secs()).unwrap();
        sqlx::query(
            "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after, status, revoked_at, \
             revocation_reason, der, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(hex::encode(cert.tbs_certificate.serial_number.as_bytes()))
        .bind(&p.id.0)
        .bind(cert.tbs_certificate.subject.to_string())
        .bind("tls-client")
        .bind(not_before)
        .bind(not_after)
        .bind(status)
        .bind(revoked_at)
        .bind(reason)
        .bind(cert.to_der().unwrap())
        .bind(now - 3600)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// The source reads what ca-server wrote, and the change feed reports an update.
async fn source_reads_the_ca_schema(admin: &AnyPool, source: &SqlSource, p: &common::Pki) {
    let statuses = source.all_serials(&p.id, OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(statuses.len(), 3, "issuing serials are not issued: {statuses:?}");
    assert_eq!(source.status(&p.id, &serial_of(&p.leaves[0])).await.unwrap(), CertificateStatus::Good);
    match source.status(&p.id, &serial_of(&p.leaves[1])).await.unwrap() {
        CertificateStatus::Revoked { time, reason } => {
            assert_eq!(time.unix_timestamp(), 1_704_067_200);
            assert_eq!(reason, Some(x509_cert::ext::pkix::CrlReason::KeyCompromise));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(source.status(&p.id, &serial_of(&p.leaves[2])).await.unwrap(), CertificateStatus::Hold { .. }));
    assert_eq!(source.status(&p.id, &serial_of(&p.leaves[3])).await.unwrap(), CertificateStatus::NotIssued);
    assert_eq!(
        source.status(&IssuerId::from("sm2"), &serial_of(&p.leaves[0])).await.unwrap(),
        CertificateStatus::NotIssued,
        "another issuer's serial"
    );

    let cursor = source.current_cursor().await.unwrap();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    sqlx::query("UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = 4, updated_at = $1 WHERE serial = $2")
        .bind(now)
        .bind(hex::encode(p.leaves[0].tbs_certificate.serial_number.as_bytes()))
        .execute(admin)
        .await
        .unwrap();
    let changes = source.changed_since(cursor).await.unwrap();
    assert!(changes.changed.contains(&(p.id.clone(), serial_of(&p.leaves[0]))), "{changes:?}");
    assert!(changes.next.0 >= now);
    // Put it back for the next part.
    sqlx::query(
        "UPDATE certificates SET status = 'good', revoked_at = NULL, revocation_reason = NULL WHERE serial = $1",
    )
    .bind(hex::encode(p.leaves[0].tbs_certificate.serial_number.as_bytes()))
    .execute(admin)
    .await
    .unwrap();
}

/// A directory with the certificates, the OCSP key and a configuration naming `url`.
fn write_config(dir: &Path, p: &common::Pki, url: &str, listen: &str) -> std::path::PathBuf {
    p.responder_key.save(&dir.join("ocsp-p256.key"), None, KeyFormat::Pem).unwrap();
    std::fs::write(dir.join("keys.toml"), "[keys.ocsp-p256]\nbackend = \"software\"\npath = \"ocsp-p256.key\"\n")
        .unwrap();
    write_pem(dir, "issuing.pem", &p.issuing);
    let config = format!(
        "listen = \"{listen}\"\nkeys = \"keys.toml\"\n[database]\nurl = \"{url}\"\n[timing]\npoll_interval_seconds = 1\n\
         [[issuers]]\nid = \"{}\"\n",
        p.id
    );
    let path = dir.join("ocsp.toml");
    std::fs::write(&path, config).unwrap();
    path
}

async fn responder_built_from_config(admin: &AnyPool, config_path: &Path, p: &common::Pki) {
    let config = Config::load(config_path).unwrap();
    let r = config::build(&config).await.unwrap();
    assert_eq!(r.start().await.unwrap().signed, 3, "three certificates, SHA-1");
    let req = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    let answer = r.respond(&req).await;
    assert_eq!((answer.outcome, answer.origin), (Outcome::Good, Origin::Cache));
    common::verify(&common::basic(&answer.body), &p.responder_cert);
    let unknown = r.respond(&request(&[cert_id(&p.issuing, &p.leaves[3], CertIdHash::Sha1)], None)).await;
    assert_eq!(unknown.outcome, Outcome::Unknown, "a reserved serial is never good");

    sqlx::query("UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = 1, updated_at = $1 WHERE serial = $2")
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .bind(hex::encode(p.leaves[0].tbs_certificate.serial_number.as_bytes()))
        .execute(admin)
        .await
        .unwrap();
    assert_eq!(r.poll_changes().await.unwrap(), 1);
    assert_eq!(r.respond(&req).await.outcome, Outcome::Revoked);
    // Re-reading the overlap window does not re-sign what did not change.
    assert_eq!(r.poll_changes().await.unwrap(), 0);
    sqlx::query(
        "UPDATE certificates SET status = 'good', revoked_at = NULL, revocation_reason = NULL WHERE serial = $1",
    )
    .bind(hex::encode(p.leaves[0].tbs_certificate.serial_number.as_bytes()))
    .execute(admin)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ca_database() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ca.db");
    let admin = admin_pool(&format!("sqlite:{}?mode=rwc", db.display())).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(migration("sqlite"))).execute(&admin).await.unwrap();
    populate(&admin, &p).await;
    let url = format!("sqlite:{}", db.display());
    let source = SqlSource::connect(&url, 2).await.unwrap();
    source_reads_the_ca_schema(&admin, &source, &p).await;
    let config = write_config(dir.path(), &p, &url, "127.0.0.1:0");
    responder_built_from_config(&admin, &config, &p).await;
    standalone_binary_serves_openssl(dir.path(), &p, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ca_database() {
    let Ok(base) = std::env::var("EPORT_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED: EPORT_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL)");
        return;
    };
    // A database of our own, so that other crates' tests in the same server do not collide.
    let name = format!("ocsp_test_{}", std::process::id());
    let server = admin_pool(&base).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&server).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&server).await.unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = format!("{prefix}/{name}");
    let admin = admin_pool(&url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(migration("postgres"))).execute(&admin).await.unwrap();
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    populate(&admin, &p).await;
    let source = SqlSource::connect(&url, 2).await.unwrap();
    source_reads_the_ca_schema(&admin, &source, &p).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &p, &url, "127.0.0.1:0");
    responder_built_from_config(&admin, &config, &p).await;
    source.pool().close().await;
    admin.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&server)
        .await
        .unwrap();
}

/// `eport-ocsp serve --config` on a free port, asked by `openssl ocsp`.
async fn standalone_binary_serves_openssl(dir: &Path, p: &common::Pki, url: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bin_dir = dir.join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let config = write_config(&bin_dir, p, url, &format!("127.0.0.1:{port}"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eport-ocsp"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let up = tokio::net::TcpStream::connect(addr).await.is_ok()
            && common::fetch(addr, "GET", "/healthz", None, &[]).await.0 == 200;
        if up {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "eport-ocsp did not become healthy");
    let root = write_pem(dir, "root.pem", &p.root);
    let issuing = write_pem(dir, "issuing-ca.pem", &p.issuing);
    for (leaf, expected) in [(0, "good"), (1, "revoked"), (3, "unknown")] {
        let leaf_path = write_pem(dir, &format!("leaf{leaf}.pem"), &p.leaves[leaf]);
        let out = tokio::process::Command::new("openssl")
            .args(["ocsp", "-issuer", issuing.to_str().unwrap(), "-cert", leaf_path.to_str().unwrap()])
            .args(["-url", &format!("http://127.0.0.1:{port}/ocsp"), "-CAfile", root.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(all.contains("Response verify OK") && all.contains(&format!("leaf{leaf}.pem: {expected}")), "{all}");
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
