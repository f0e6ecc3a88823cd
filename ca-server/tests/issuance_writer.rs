//! The issuance writer (group commit of issuance's reserve and mark-issued steps): each job's
//! outcome is its own, whatever else shares its transaction.
#![allow(clippy::unwrap_used)]

mod common;

use ca_server::Clock as _;
use ca_server::store::{Claim, IssuanceWriter, NewCertificate, Reservation};
use common::{Fixture, backends};

fn reservation(serial: &str, registration_id: &str) -> NewCertificate {
    NewCertificate {
        serial: serial.into(),
        issuer: "p256".into(),
        subject: "CN=x".into(),
        profile: "enterprise-legal-rep".into(),
        registration_id: Some(registration_id.into()),
        uscc: None,
        not_before: 0,
        not_after: 1,
    }
}

fn claim(registration_id: &str) -> Option<Claim> {
    Some(Claim { registration_id: registration_id.into(), max_attempts: 5 })
}

#[tokio::test]
async fn concurrent_claims_of_one_code_reserve_once_and_a_taken_serial_claims_nothing() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let writer = IssuanceWriter::start(f.ca.store().clone()).unwrap();
        let now = f.clock.now().unix_timestamp();
        let (a, _) = f.approved_enterprise().await;
        let (b, _) = f.approved_enterprise().await;

        // Eight enrolments racing for code `a` (most likely in one batch on SQLite): one wins.
        let mut racing = tokio::task::JoinSet::new();
        for i in 0..8u8 {
            let (writer, row, claim) = (writer.clone(), reservation(&format!("4a00{i:02x}"), &a), claim(&a));
            racing.spawn(async move { (i, writer.reserve(row, claim, now).await.unwrap()) });
        }
        let mut outcomes = racing.join_all().await;
        outcomes.sort_unstable_by_key(|(i, _)| *i);
        let outcomes: Vec<Reservation> = outcomes.into_iter().map(|(_, r)| r).collect();
        assert_eq!(outcomes.iter().filter(|r| **r == Reservation::Reserved).count(), 1, "{}", backend.name);
        assert!(outcomes.iter().all(|r| matches!(r, Reservation::Reserved | Reservation::CodeGone)));

        // A taken serial leaves code `b` unclaimed, so a fresh serial can still claim it.
        let winner = outcomes.iter().position(|r| *r == Reservation::Reserved).unwrap();
        let taken = format!("4a00{winner:02x}");
        assert_eq!(writer.reserve(reservation(&taken, &b), claim(&b), now).await.unwrap(), Reservation::SerialTaken);
        assert_eq!(f.ca.store().code(&b).await.unwrap().unwrap().used_at, None);
        assert_eq!(writer.reserve(reservation("4b01", &b), claim(&b), now).await.unwrap(), Reservation::Reserved);

        // Marked issued once; an unknown or already issued serial is not.
        assert!(writer.issued("4b01".into(), b"der".to_vec(), Some(b.clone()), now).await.unwrap());
        assert!(!writer.issued("4b01".into(), b"der".to_vec(), Some(b.clone()), now).await.unwrap());
        assert!(!writer.issued("4bff".into(), b"der".to_vec(), None, now).await.unwrap());
        let row = f.ca.store().certificate("4b01").await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.der.as_deref()), ("good", Some(&b"der"[..])));
        assert_eq!(f.ca.store().code(&b).await.unwrap().unwrap().serial.as_deref(), Some("4b01"));
        drop(writer);
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn a_failed_batch_fails_only_its_jobs_and_a_closed_database_takes_no_more() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let writer = IssuanceWriter::start(f.ca.store().clone()).unwrap();
        let now = f.clock.now().unix_timestamp();
        let (a, _) = f.approved_enterprise().await;

        // No such issuer: the foreign key fails the job's transaction, and nothing of it stays.
        let mut orphan = reservation("4c01", &a);
        orphan.issuer = "none".into();
        assert!(writer.reserve(orphan, claim(&a), now).await.is_err(), "{}", backend.name);
        assert!(f.ca.store().certificate("4c01").await.unwrap().is_none());
        assert_eq!(f.ca.store().code(&a).await.unwrap().unwrap().used_at, None);

        // The writer goes on (on SQLite, on a fresh connection of its own).
        assert_eq!(writer.reserve(reservation("4c02", &a), claim(&a), now).await.unwrap(), Reservation::Reserved);
        assert!(writer.issued("4c02".into(), b"der".to_vec(), Some(a.clone()), now).await.unwrap());

        // A closed writer takes no more jobs (on SQLite; on PostgreSQL there is no writer to
        // close, each job is a transaction on the pool).
        let closed = IssuanceWriter::start(f.ca.store().clone()).unwrap();
        closed.close().await;
        let after_close = closed.reserve(reservation("4c04", &a), None, now).await;
        assert_eq!(after_close.is_err(), f.ca.store().sqlite_path().is_some(), "{}", backend.name);

        // Once the database is closed, it writes nothing more.
        f.ca.store().close().await;
        assert!(writer.reserve(reservation("4c03", &a), None, now).await.is_err(), "{}", backend.name);
        drop(writer);
        f.close(&backend).await;
    }
}
