//! `eport-ca officer add`: a new administrator identity with one role, written like the
//! bootstrap identities, audited; a name that exists is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use ca_server::{Ca, Error, RegistrationRequest, Role};
use common::Fixture;
use policies::OfficerRole;
use signer_lib::audit::{EventType, QueryFilter};

#[tokio::test]
async fn an_added_officer_logs_in_with_its_one_role_and_the_name_cannot_be_reused() {
    for backend in common::backends().await {
        let f = Fixture::new(&backend).await;
        f.ca.close().await;
        let report = Ca::add_officer_with_clock(f.data(), &f.config, "wang-wu", OfficerRole::Audit, f.clock.clone())
            .await
            .unwrap();
        assert_eq!(report.role, Role::AuditOfficer);
        assert!(
            report.subject.contains("CN=wang-wu") && report.subject.contains("audit-officer"),
            "{}",
            report.subject
        );
        for path in [&report.certificate, &report.key, &report.passphrase_file] {
            assert!(path.starts_with(f.data().join("officers")), "{}", path.display());
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
            }
        }
        // The key opens with the generated passphrase and is the certificate's.
        let passphrase = std::fs::read(&report.passphrase_file).unwrap();
        let key = signer_lib::key::software::SoftwareKey::load(&report.key, Some(&passphrase)).unwrap();
        let pem = std::fs::read_to_string(&report.certificate).unwrap();
        signer_lib::key::check_matches_certificate(&key, &common::cert(&pem)).unwrap();

        // The same name is refused whatever the role: one identity, one role.
        for role in [OfficerRole::Audit, OfficerRole::Security] {
            let again = Ca::add_officer_with_clock(f.data(), &f.config, "wang-wu", role, f.clock.clone()).await;
            assert!(matches!(again, Err(Error::Conflict { .. })), "{again:?}");
        }
        let bootstrap =
            Ca::add_officer_with_clock(f.data(), &f.config, "security-officer-1", OfficerRole::Audit, f.clock.clone())
                .await;
        assert!(matches!(bootstrap, Err(Error::Conflict { .. })), "{bootstrap:?}");
        let bad = Ca::add_officer_with_clock(f.data(), &f.config, "../evil", OfficerRole::Audit, f.clock.clone()).await;
        assert!(matches!(bad, Err(Error::BadRequest { .. })), "{bad:?}");

        // At the next start the identity logs in as an audit officer, and only as that.
        let ca = Ca::open_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
        let source = Some(SocketAddr::from(([127, 0, 0, 1], 40001)));
        let caller = ca.identify(&common::der_of(&pem), source, "t-new").await.unwrap();
        assert_eq!(caller.role, Some(Role::AuditOfficer));
        ca.list_certificates(&caller, ca_server::CertificateFilter::default()).await.unwrap();
        let refused = ca
            .register(
                &caller,
                RegistrationRequest::Agency {
                    agency_code: "TAX-01".into(),
                    name: "Tax".into(),
                    profile: "agency".into(),
                },
            )
            .await;
        assert!(matches!(refused, Err(Error::Forbidden { .. })), "{refused:?}");

        // Audited: the key, the certificate, the account and its role.
        let objects = |event| {
            let ca = ca.clone();
            async move {
                let filter = QueryFilter { event: Some(event), limit: 10_000, ..QueryFilter::default() };
                let records = ca.audit_log().query(&filter).await.unwrap();
                records.into_iter().map(|r| r.record.object.unwrap_or_default()).collect::<Vec<_>>()
            }
        };
        assert!(objects(EventType::KeyGenerate).await.contains(&"officers/wang-wu".to_owned()));
        assert!(objects(EventType::Issue).await.contains(&report.serial_hex));
        assert!(objects(EventType::AccountCreated).await.iter().any(|o| o.starts_with("wang-wu")));
        assert!(objects(EventType::RoleChange).await.contains(&"wang-wu: granted audit_officer".to_owned()));
        ca.audit_log().verify(|_, _| {}).await.unwrap();
        ca.close().await;
        backend.cleanup().await;
    }
}

#[test]
fn the_command_line_adds_an_officer_and_refuses_a_duplicate_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ca");
    let ca = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_eport-ca")).args(args).arg("--data").arg(&data).output().unwrap()
    };
    assert!(ca(&["init"]).status.success());
    let added = ca(&["officer", "add", "--role", "security-officer", "--name", "li-si"]);
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(added.status.success(), "{text}{}", String::from_utf8_lossy(&added.stderr));
    assert!(text.contains("security_officer") && text.contains("li-si.pass"), "{text}");
    let again = ca(&["officer", "add", "--role", "system-admin", "--name", "li-si"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("exists"), "{stderr}");
    let bad_role = ca(&["officer", "add", "--role", "root", "--name", "zhao-liu"]);
    assert!(!bad_role.status.success());

    // While a `serve` holds the data directory, offline commands are refused in one line.
    let serving = ca_server::lock::DataLock::acquire(&data, "serve").unwrap();
    for args in [&["officer", "add", "--role", "audit-officer", "--name", "wang-wu"][..], &["rotate", "tls"][..]] {
        let refused = ca(args);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("stop `eport-ca serve`"), "{stderr}");
    }
    drop(serving);
    assert!(ca(&["officer", "add", "--role", "audit-officer", "--name", "wang-wu"]).status.success());
}
