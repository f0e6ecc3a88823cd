//! Issuance durability: fail closed when the audit log fails; recover serials left reserved by
//! a crash; and a real kill -9 in the middle of enrolments.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use ca_server::Clock as _;
use ca_server::store::{Claim, IssuanceWriter, NewCertificate, Reservation};
use ca_server::{Ca, CertificateFilter, CertificateStatus, Config, Error, ManualClock, RegistrationStatus};
use common::{Backend, Fixture, backends, config_for, csr};
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{Actor, AuditRecord, EventType, Outcome, QueryFilter, now_millis};
use sqlx::Connection as _;

/// Breaks the audit store under the running CA: its record table disappears, so every append
/// fails (as a full disk or a lost database would make it).
async fn break_audit_store(f: &Fixture, backend: &Backend) {
    sqlx::any::install_default_drivers();
    let url = backend.audit_url.clone().unwrap_or_else(|| format!("sqlite:{}", f.data().join("audit.db").display()));
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("DROP TABLE audit_records").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn statuses(f: &Fixture) -> Vec<(String, CertificateStatus)> {
    let mut all = Vec::new();
    for status in ["good", "issuing", "abandoned"] {
        let filter = CertificateFilter { status: Some(status.into()), ..CertificateFilter::default() };
        for c in f.ca.list_certificates(&f.security1, filter).await.unwrap() {
            all.push((c.serial_hex, c.status));
        }
    }
    all
}

#[tokio::test]
async fn a_failing_audit_log_fails_enrolment_and_nothing_is_issued() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (id, code) = f.approved_enterprise().await;
        let pending =
            f.ca.register(
                &f.security1,
                ca_server::RegistrationRequest::Agency {
                    agency_code: "CIQ-1".into(),
                    name: "检验检疫".into(),
                    profile: "agency".into(),
                },
            )
            .await
            .unwrap();
        let before = statuses(&f).await;
        break_audit_store(&f, &backend).await;

        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let err = f.ca.enrol(&Fixture::anonymous([10, 6, 0, 1]), &code, &pem).await.unwrap_err();
        assert!(matches!(err, Error::AuditUnavailable(_)), "{}: {err}", backend.name);
        // The reserved serial is abandoned, nothing is good that was not before.
        let after = statuses(&f).await;
        let new: Vec<_> = after.iter().filter(|s| !before.contains(s)).collect();
        assert_eq!(new.len(), 1, "{new:?}");
        assert_eq!(new[0].1, CertificateStatus::Abandoned);
        let registration = f.ca.registration(&f.security1, &id).await.unwrap();
        assert_eq!(registration.status, RegistrationStatus::Approved);

        // Other state changes are rolled back too.
        let err = f.ca.approve(&f.security1, &pending.id).await.unwrap_err();
        assert!(matches!(err, Error::AuditUnavailable(_)), "{err}");
        let registration = f.ca.registration(&f.security1, &pending.id).await.unwrap();
        assert!(registration.approvals.is_empty() && registration.status == RegistrationStatus::Pending);
        let err =
            f.ca.register(
                &f.security1,
                ca_server::RegistrationRequest::Agency {
                    agency_code: "CIQ-2".into(),
                    name: "x".into(),
                    profile: "agency".into(),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AuditUnavailable(_)), "{err}");
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn settles_certificates_marked_issued_whose_audit_record_was_pending() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let now = f.clock.now().unix_timestamp();

        // A normal enrolment clears its flag by itself, shortly after it returns.
        let (_, code) = f.approved_enterprise().await;
        let issued =
            f.ca.enrol(&Fixture::anonymous([10, 7, 0, 1]), &code, &csr(SignatureAlgorithm::EcdsaP256Sha256).1)
                .await
                .unwrap();
        let mut waited = 0;
        while !f.ca.store().audit_pending_serials().await.unwrap().is_empty() {
            assert!(waited < 100, "{}: audit_pending never cleared", backend.name);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waited += 1;
        }

        // What a crash between the two halves of step 3 leaves: rows marked issued with their
        // flag set; `lost` has no Issue record, `kept` has one.
        let writer = IssuanceWriter::start(f.ca.store().clone()).unwrap();
        let (lost_registration, lost_code) = f.approved_enterprise().await;
        let (kept_registration, _) = f.approved_enterprise().await;
        let mut marked = Vec::new();
        for (serial, registration) in [("4d01", &lost_registration), ("4d02", &kept_registration)] {
            let claim = Some(Claim { registration_id: registration.clone(), max_attempts: 5 });
            let row = NewCertificate {
                serial: serial.into(),
                issuer: "p256".into(),
                subject: "CN=x".into(),
                profile: "enterprise-legal-rep".into(),
                registration_id: Some(registration.clone()),
                uscc: None,
                not_before: 0,
                not_after: 1,
            };
            assert_eq!(writer.reserve(row, claim, now).await.unwrap(), Reservation::Reserved);
            assert!(writer.issued(serial.into(), b"der".to_vec(), Some(registration.clone()), now).await.unwrap());
            marked.push(serial.to_owned());
        }
        writer.close().await;
        assert_eq!(f.ca.store().audit_pending_serials().await.unwrap(), marked, "{}", backend.name);
        let record = AuditRecord::new(now_millis(), Actor::account("ca"), EventType::Issue).object("4d02");
        f.ca.audit_log().append(&record).await.unwrap();

        let Fixture { dir, config, clock, ca, .. } = f;
        ca.close().await;
        let ca = Ca::open_with_clock(dir.path(), &config, clock.clone()).await.unwrap();
        let store = ca.store();
        assert!(store.audit_pending_serials().await.unwrap().is_empty(), "{}", backend.name);
        // Recorded: it may have been released, so it stays good.
        assert_eq!(store.certificate("4d02").await.unwrap().unwrap().status, "good");
        assert_eq!(store.certificate(&issued.serial_hex).await.unwrap().unwrap().status, "good");
        // Not recorded: never released; taken back, audited, and its code works again.
        assert_eq!(store.certificate("4d01").await.unwrap().unwrap().status, "abandoned");
        let code_row = store.code(&lost_registration).await.unwrap().unwrap();
        assert_eq!((code_row.used_at, code_row.serial), (None, None));
        let filter = QueryFilter { object: Some("4d01".into()), ..QueryFilter::default() };
        let records = ca.audit_log().query(&filter).await.unwrap();
        assert!(
            records.iter().any(|r| matches!(&r.record.outcome, Outcome::Failure(m) if m.contains("never released"))),
            "{records:?}"
        );
        let again =
            ca.enrol(&Fixture::anonymous([10, 7, 0, 2]), &lost_code, &csr(SignatureAlgorithm::EcdsaP256Sha256).1).await;
        assert!(again.is_ok(), "{}: {again:?}", backend.name);
        ca.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn recovers_serials_left_reserved_by_a_crash() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        // What a crash between reservation and release leaves behind.
        let store = f.ca.store();
        let mut tx = store.begin().await.unwrap();
        let serial = "4a0b0c0d0e0f10111213141516171819".to_owned();
        let row = NewCertificate {
            serial: serial.clone(),
            issuer: "p256".into(),
            subject: "CN=x".into(),
            profile: "agency".into(),
            registration_id: None,
            uscc: None,
            not_before: 0,
            not_after: 1,
        };
        store.reserve_serial(&mut tx, &row, 1).await.unwrap();
        tx.commit().await.unwrap();
        let Fixture { dir, config, clock, ca, .. } = f;
        ca.close().await;

        let ca = Ca::open_with_clock(dir.path(), &config, clock.clone()).await.unwrap();
        let row = ca.store().certificate(&serial).await.unwrap().unwrap();
        assert_eq!(row.status, "abandoned");
        let filter = QueryFilter { object: Some(serial.clone()), ..QueryFilter::default() };
        let records = ca.audit_log().query(&filter).await.unwrap();
        assert!(
            records.iter().any(|r| r.record.event == EventType::Issue
                && matches!(&r.record.outcome, Outcome::Failure(m) if m.contains("abandoned"))),
            "{records:?}"
        );
        // Never reused.
        let mut tx = ca.store().begin().await.unwrap();
        let again = NewCertificate {
            serial,
            issuer: "p256".into(),
            subject: "CN=y".into(),
            profile: "agency".into(),
            registration_id: None,
            uscc: None,
            not_before: 0,
            not_after: 1,
        };
        assert!(ca_server::store::is_unique_violation(
            &ca.store().reserve_serial(&mut tx, &again, 2).await.unwrap_err()
        ));
        drop(tx);
        ca.close().await;
        backend.cleanup().await;
    }
}

/// The variables the crash child reads.
const CHILD_DIR: &str = "EPORT_CA_CRASH_CHILD_DIR";
const CHILD_DB: &str = "EPORT_CA_CRASH_CHILD_DB";

/// Not a test on its own: the child process of `survives_kill_9_during_enrolments`, which
/// enrols with every code in `<dir>/codes` and prints each serial once `enrol` returned.
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let dir = std::path::PathBuf::from(dir);
    let mut config = Config::default();
    if let Ok(url) = std::env::var(CHILD_DB) {
        config.database.url = Some(url.clone());
        config.audit.url = Some(url);
    }
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let ca = Ca::open_with_clock(&dir, &config, clock).await.unwrap();
    let codes = std::fs::read_to_string(dir.join("codes")).unwrap();
    for (i, code) in codes.lines().enumerate() {
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let ip = [10, 7, u8::try_from(i / 250).unwrap(), u8::try_from(i % 250).unwrap()];
        // A code whose issuance a previous kill interrupted was used up: skip it.
        match ca.enrol(&Fixture::anonymous(ip), code, &pem).await {
            Ok(issued) => println!("ISSUED {}", issued.serial_hex),
            Err(e) => println!("REFUSED {e}"),
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[tokio::test]
async fn survives_kill_9_during_enrolments() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let mut codes = String::new();
        for _ in 0..60 {
            codes.push_str(&f.approved_enterprise().await.1);
            codes.push('\n');
        }
        std::fs::write(f.data().join("codes"), codes).unwrap();
        let Fixture { dir, config, clock, ca, .. } = f;
        ca.close().await;
        let mut acknowledged = Vec::new();
        for round in 0..4u64 {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.args(["crash_child", "--exact", "--nocapture", "--test-threads=1"]).env(CHILD_DIR, dir.path());
            if let Some(url) = &backend.database_url {
                command.env(CHILD_DB, url);
            }
            let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = 0;
            while seen < 3 {
                let line = lines.next().expect("the child stopped before issuing").unwrap();
                if let Some(serial) = line.strip_prefix("ISSUED ") {
                    acknowledged.push(serial.to_owned());
                    seen += 1;
                }
            }
            // Kill at a different point of the next issuance each round.
            std::thread::sleep(std::time::Duration::from_millis(3 * round + u64::from(common::rand_byte() % 8)));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            // The lines printed before the kill landed are acknowledged too.
            for line in lines.map_while(Result::ok) {
                if let Some(serial) = line.strip_prefix("ISSUED ") {
                    acknowledged.push(serial.to_owned());
                }
            }

            let ca = Ca::open_with_clock(dir.path(), &config_with(&config, &backend), clock.clone()).await.unwrap();
            check_after_crash(&ca, dir.path(), &acknowledged, backend.name).await;
            ca.close().await;
        }
        backend.cleanup().await;
    }
}

/// The invariants after a crash and recovery.
async fn check_after_crash(ca: &Ca, dir: &std::path::Path, acknowledged: &[String], backend: &str) {
    let officer = std::fs::read_to_string(dir.join("bootstrap/security-officer-1.crt")).unwrap();
    let security = ca.identify(&common::der_of(&officer), None, "t").await.unwrap();
    let list = |status: &str| {
        let filter = CertificateFilter { status: Some(status.into()), ..CertificateFilter::default() };
        let (ca, security) = (ca.clone(), security.clone());
        async move { ca.list_certificates(&security, filter).await.unwrap() }
    };
    // Nothing is left half-issued: no reservation, no row waiting to learn of its Issue record.
    assert!(list("issuing").await.is_empty());
    assert!(ca.store().audit_pending_serials().await.unwrap().is_empty());
    eprintln!(
        "{backend}: {} acknowledged so far, {} reservations abandoned by recovery",
        acknowledged.len(),
        list("abandoned").await.len()
    );
    // Every acknowledged certificate is recorded as issued.
    let good: Vec<String> = list("good").await.into_iter().map(|c| c.serial_hex).collect();
    for serial in acknowledged {
        assert!(good.contains(serial), "acknowledged {serial} is not good");
    }
    // Every good certificate has a successful Issue record (no unrecorded issuance), and no
    // serial appears twice.
    let issue_records = ca
        .audit_log()
        .query(&QueryFilter { event: Some(EventType::Issue), limit: 10_000, ..QueryFilter::default() })
        .await
        .unwrap();
    for serial in &good {
        let successes = issue_records
            .iter()
            .filter(|r| r.record.object.as_deref() == Some(serial) && r.record.outcome == Outcome::Success)
            .count();
        assert_eq!(successes, 1, "{serial}: {successes} successful Issue records");
    }
    ca.audit_log().verify(|_, _| {}).await.unwrap();
}

fn config_with(config: &Config, backend: &Backend) -> Config {
    let mut c = config.clone();
    if backend.database_url.is_some() {
        c = config_for(backend);
    }
    c
}
