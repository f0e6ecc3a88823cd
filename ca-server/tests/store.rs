//! The CA database on SQLite and PostgreSQL: migrations, and the invariants the schema itself
//! enforces (serial uniqueness, one role per identity, one approval per officer, monotonic
//! cRLNumbers).
#![allow(clippy::unwrap_used)]

mod common;

use ca_server::store::{IdentityRow, IssuerRow, NewCertificate, RegistrationRow, Store, is_unique_violation};
use common::{Backend, backends};

async fn connect(backend: &Backend, dir: &std::path::Path) -> Store {
    let url = backend.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", dir.join("ca.db").display()));
    Store::connect(&url, 4, true).await.unwrap()
}

fn issuer(id: &str) -> IssuerRow {
    IssuerRow {
        id: id.into(),
        algorithm: "p256".into(),
        root_der: vec![1],
        issuing_der: vec![2],
        issuing_key: format!("issuing-{id}"),
        ocsp_der: vec![3],
        ocsp_key: format!("ocsp-{id}"),
        tsa_der: vec![4],
        tsa_key: format!("tsa-{id}"),
        created_at: 1,
    }
}

fn certificate(serial: &str) -> NewCertificate {
    NewCertificate {
        serial: serial.into(),
        issuer: "p256".into(),
        subject: "CN=x".into(),
        profile: "agency".into(),
        registration_id: None,
        uscc: None,
        not_before: 0,
        not_after: i64::from(u32::MAX),
    }
}

#[tokio::test]
async fn migrates_once_and_reopens_at_the_same_version() {
    for backend in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let store = connect(&backend, dir.path()).await;
        // Every migration applied (3: key_rotations is the latest).
        let version = store.schema_version().await.unwrap();
        assert!(version >= 3, "{}: {version}", backend.name);
        store.close().await;
        let store = connect(&backend, dir.path()).await;
        assert_eq!(store.schema_version().await.unwrap(), version, "{}", backend.name);
        assert!(store.issuers().await.unwrap().is_empty());
        store.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn a_serial_is_reserved_once_whatever_became_of_it() {
    for backend in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let store = connect(&backend, dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        store.insert_issuer(&mut tx, &issuer("p256")).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.begin().await.unwrap();
        store.reserve_serial(&mut tx, &certificate("4f01"), 10).await.unwrap();
        tx.commit().await.unwrap();
        assert!(store.mark_abandoned("4f01", 11).await.unwrap());
        // An abandoned serial stays taken.
        let mut tx = store.begin().await.unwrap();
        let err = store.reserve_serial(&mut tx, &certificate("4f01"), 12).await.unwrap_err();
        assert!(is_unique_violation(&err), "{}: {err}", backend.name);
        drop(tx);
        // An abandoned reservation cannot be marked issued.
        let mut tx = store.begin().await.unwrap();
        assert!(!store.mark_issued(&mut tx, "4f01", b"der", 13).await.unwrap());
        drop(tx);
        let row = store.certificate("4f01").await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.der), ("abandoned", None));
        store.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn an_identity_holds_one_role() {
    for backend in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let store = connect(&backend, dir.path()).await;
        let officer = IdentityRow {
            name: "security-officer-1".into(),
            subject: "CN=Wang,title=security-officer,C=CN".into(),
            serial: "41".into(),
            role: "security_officer".into(),
            created_at: 1,
        };
        let mut tx = store.begin().await.unwrap();
        store.insert_identity(&mut tx, &officer).await.unwrap();
        tx.commit().await.unwrap();
        // The same subject as audit officer too: refused by the database.
        let second =
            IdentityRow { name: "audit-1".into(), serial: "42".into(), role: "audit_officer".into(), ..officer };
        let mut tx = store.begin().await.unwrap();
        assert!(store.insert_identity(&mut tx, &second).await.is_err(), "{}", backend.name);
        drop(tx);
        // An unknown role: refused by the CHECK constraint.
        let odd = IdentityRow {
            name: "x".into(),
            subject: "CN=x".into(),
            serial: "43".into(),
            role: "superuser".into(),
            created_at: 1,
        };
        let mut tx = store.begin().await.unwrap();
        assert!(store.insert_identity(&mut tx, &odd).await.is_err(), "{}", backend.name);
        drop(tx);
        assert_eq!(store.identity_by_serial("41").await.unwrap().unwrap().role, "security_officer");
        assert!(store.identity_by_serial("42").await.unwrap().is_none());
        store.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn an_officer_approves_a_registration_once() {
    for backend in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let store = connect(&backend, dir.path()).await;
        let registration = RegistrationRow {
            id: "0123456789abcdef".into(),
            kind: "agency".into(),
            identifier: "CUSTOMS-3501".into(),
            name: "Customs".into(),
            legal_representative: None,
            person_name: "Customs".into(),
            profile: "agency".into(),
            status: "pending".into(),
            approvals_needed: 2,
            created_by: "CN=a".into(),
            created_at: 1,
            updated_at: 1,
        };
        let mut tx = store.begin().await.unwrap();
        store.insert_registration(&mut tx, &registration).await.unwrap();
        store.insert_approval(&mut tx, &registration.id, "CN=a", 2).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let err = store.insert_approval(&mut tx, &registration.id, "CN=a", 3).await.unwrap_err();
        assert!(is_unique_violation(&err), "{}: {err}", backend.name);
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        store.insert_approval(&mut tx, &registration.id, "CN=b", 4).await.unwrap();
        assert_eq!(store.approvals(&mut tx, &registration.id).await.unwrap(), ["CN=a", "CN=b"]);
        tx.commit().await.unwrap();
        store.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn crl_numbers_only_grow_and_a_rolled_back_number_is_reused() {
    for backend in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let store = connect(&backend, dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        store.insert_issuer(&mut tx, &issuer("p256")).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert_eq!(store.next_crl_number(&mut tx, "p256").await.unwrap(), 1);
        tx.commit().await.unwrap();
        // A generation that fails before commit does not consume a number.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(store.next_crl_number(&mut tx, "p256").await.unwrap(), 2);
        tx.rollback().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert_eq!(store.next_crl_number(&mut tx, "p256").await.unwrap(), 2);
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert!(store.next_crl_number(&mut tx, "nope").await.is_err());
        drop(tx);
        store.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn counts_failures_in_the_window_and_after_the_last_lock() {
    for backend in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let store = connect(&backend, dir.path()).await;
        for (at, expected) in [(100, 1), (200, 2), (300, 3)] {
            assert_eq!(store.add_auth_failure("serial:41", at, 0, "bad").await.unwrap(), expected);
        }
        // Only the failures since 250 count.
        assert_eq!(store.add_auth_failure("serial:41", 400, 250, "bad").await.unwrap(), 2);
        store.lock("serial:41", 1000).await.unwrap();
        assert_eq!(store.locked_until("serial:41", 999).await.unwrap(), Some(1000));
        assert_eq!(store.locked_until("serial:41", 1000).await.unwrap(), None);
        // The enrolment check reads the same lock along with a code (none here).
        assert_eq!(store.code_with_registration("r-none", "serial:41", 999).await.unwrap(), (Some(1000), None));
        assert_eq!(store.code_with_registration("r-none", "serial:41", 1000).await.unwrap(), (None, None));
        assert_eq!(store.code_with_registration("r-none", "serial:99", 999).await.unwrap(), (None, None));
        // After the lock, counting starts again.
        assert_eq!(store.add_auth_failure("serial:41", 1001, 0, "bad").await.unwrap(), 1);
        assert_eq!(store.add_auth_failure("serial:99", 1001, 0, "bad").await.unwrap(), 1);
        store.close().await;
        backend.cleanup().await;
    }
}

#[test]
fn replaces_the_database_of_a_url() {
    use common::with_database;
    assert_eq!(with_database("postgres://u:p@h:1/base", "x"), "postgres://u:p@h:1/x");
    assert_eq!(with_database("postgres://u@h/base?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
