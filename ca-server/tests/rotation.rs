//! `eport-ca rotate ocsp-signer | tls`: a new key and certificate per generation, the old ones
//! kept, the new ones used from the next start, everything audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use ca_server::store::Purpose;
use ca_server::{Ca, Clock as _};
use common::Fixture;
use signer_lib::audit::{EventType, QueryFilter};
use time::{Duration, OffsetDateTime};

/// The audit records of `event` (objects).
async fn audited(ca: &Ca, event: EventType) -> Vec<String> {
    let filter = QueryFilter { event: Some(event), limit: 10_000, ..QueryFilter::default() };
    let records = ca.audit_log().query(&filter).await.unwrap();
    records.into_iter().map(|r| r.record.object.unwrap_or_default()).collect()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["certs", "keys"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let entry = entry.unwrap();
            files
                .insert(format!("{sub}/{}", entry.file_name().to_string_lossy()), std::fs::read(entry.path()).unwrap());
        }
    }
    files
}

/// The responder certificate serials of the in-process OCSP responder, by issuer.
async fn ocsp_serials(ca: &Ca, now: OffsetDateTime) -> BTreeMap<String, String> {
    ca.ocsp_issuers(now)
        .await
        .unwrap()
        .iter()
        .map(|i| (i.id().0.clone(), hex::encode(i.responder_certificate().tbs_certificate.serial_number.as_bytes())))
        .collect()
}

#[tokio::test]
async fn rotating_ocsp_signers_makes_short_lived_new_generations_used_at_the_next_start() {
    for backend in common::backends().await {
        let f = Fixture::new(&backend).await;
        let now = f.clock.now();
        let before = ocsp_serials(&f.ca, now).await;
        f.ca.close().await;
        let files_before = snapshot(f.data());

        let report = Ca::rotate_ocsp_signers_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
        assert_eq!(report.rotated.len(), 2, "{}", backend.name);
        for rotated in &report.rotated {
            assert_eq!(rotated.generation, 2);
            assert_eq!(rotated.key.name, format!("ocsp-{}-g2", rotated.issuer));
            assert_eq!(rotated.superseded_serial, before[&rotated.issuer]);
            assert!(rotated.certificate.ends_with(format!("certs/{}-ocsp-g2.pem", rotated.issuer)));
            assert!(rotated.superseded_file.ends_with(format!("certs/{}-ocsp.pem", rotated.issuer)));
            // Short-lived: the profile's 90 days at most.
            assert!(rotated.not_after <= now + Duration::days(90), "{}", rotated.not_after);
            assert!(rotated.not_after > now + Duration::days(80));
            let cert = common::cert(&std::fs::read_to_string(&rotated.certificate).unwrap());
            assert_eq!(hex::encode(cert.tbs_certificate.serial_number.as_bytes()), rotated.serial_hex);
        }
        let text = report.to_string();
        assert!(text.contains("notAfter") && text.contains("supersedes"), "{text}");

        // Nothing was overwritten: every old file is still there, byte for byte.
        let files_after = snapshot(f.data());
        for (name, bytes) in &files_before {
            assert_eq!(files_after.get(name), Some(bytes), "{name} changed or vanished");
        }
        assert!(files_after.contains_key("keys/ocsp-p256-g2.key") && files_after.contains_key("keys/ocsp-sm2-g2.key"));

        // The next start serves the new generation, and the new certificates are on record.
        let ca = Ca::open_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
        let after = ocsp_serials(&ca, now).await;
        for rotated in &report.rotated {
            assert_eq!(after[&rotated.issuer], rotated.serial_hex);
            let row = ca.store().certificate(&rotated.serial_hex).await.unwrap().unwrap();
            assert_eq!((row.profile.as_str(), row.status.as_str()), ("ocsp-signer", "good"));
            let rotation = ca.store().latest_rotation(Purpose::OcspSigner, &rotated.issuer).await.unwrap().unwrap();
            assert_eq!(rotation.serial, rotated.serial_hex);
        }

        // Audited: the keys, the certificates, the change of signer; the log verifies.
        let generated = audited(&ca, EventType::KeyGenerate).await;
        assert!(generated.contains(&"ocsp-p256-g2".to_owned()) && generated.contains(&"ocsp-sm2-g2".to_owned()));
        let issued = audited(&ca, EventType::Issue).await;
        assert!(report.rotated.iter().all(|r| issued.contains(&r.serial_hex)));
        assert_eq!(audited(&ca, EventType::OcspSignerChanged).await.len(), 2);
        ca.audit_log().verify(|_, _| {}).await.unwrap();
        ca.close().await;

        // A second rotation makes generation 3 and supersedes generation 2.
        let again = Ca::rotate_ocsp_signers_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
        for (second, first) in again.rotated.iter().zip(&report.rotated) {
            assert_eq!(second.generation, 3);
            assert_eq!(second.superseded_serial, first.serial_hex);
            assert_eq!(second.superseded_key, first.key.name);
        }
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn rotating_the_tls_certificate_serves_the_new_one_from_the_next_start() {
    for backend in common::backends().await {
        let f = Fixture::new(&backend).await;
        let old_chain = f.ca.tls_material().server_chain_der;
        f.ca.close().await;
        let old_file = std::fs::read(f.data().join("certs/tls-server.pem")).unwrap();

        let report = Ca::rotate_tls_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
        let rotated = &report.rotated[0];
        assert_eq!((rotated.purpose, rotated.issuer.as_str(), rotated.generation), ("tls-server", "p256", 2));
        assert_eq!(rotated.key.name, "tls-server-g2");
        assert_eq!(std::fs::read(f.data().join("certs/tls-server.pem")).unwrap(), old_file, "old chain kept");

        let ca = Ca::open_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
        let material = ca.tls_material();
        assert_ne!(material.server_chain_der[0], old_chain[0]);
        let leaf = der::Decode::from_der(&material.server_chain_der[0])
            .map(|c: x509_cert::Certificate| hex::encode(c.tbs_certificate.serial_number.as_bytes()));
        assert_eq!(leaf.unwrap(), rotated.serial_hex);
        assert_eq!(material.server_chain_der.len(), 3, "leaf, issuing CA, root");
        assert!(material.server_key_pkcs8_der.is_some());
        assert_eq!(audited(&ca, EventType::ConfigurationChanged).await.len(), 1);
        assert!(audited(&ca, EventType::KeyGenerate).await.contains(&"tls-server-g2".to_owned()));
        // The listener accepts the new material.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ca_server::tls::server_config(
            &material.server_chain_der,
            material.server_signer.clone(),
            &material.client_ca_der,
        )
        .unwrap();
        ca.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn an_interrupted_rotation_leaves_its_files_alone_and_the_next_one_skips_them() {
    let backend = common::sqlite();
    let f = Fixture::new(&backend).await;
    f.ca.close().await;
    // The remains of a rotation that stopped after writing its key file.
    std::fs::write(f.data().join("keys/tls-server-g2.key"), b"left over").unwrap();
    let report = Ca::rotate_tls_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
    assert_eq!(report.rotated[0].generation, 3);
    assert_eq!(std::fs::read(f.data().join("keys/tls-server-g2.key")).unwrap(), b"left over");
    let ca = Ca::open_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
    assert_eq!(
        ca.store().latest_rotation(Purpose::TlsServer, "p256").await.unwrap().unwrap().key_name,
        "tls-server-g3"
    );
    ca.close().await;
}

#[test]
fn the_command_line_rotates_and_refuses_a_directory_without_a_ca_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ca");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_eport-ca")).args(args).arg("--data").arg(&data).output().unwrap()
    };
    let refused = run(&["rotate", "tls"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("holds no initialised CA"), "{stderr}");

    assert!(run(&["init"]).status.success());
    for (args, expected) in [(["rotate", "ocsp-signer"], "p256-ocsp-g2.pem"), (["rotate", "tls"], "tls-server-g2.pem")]
    {
        let out = run(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(expected) && text.contains("notAfter"), "{text}");
    }
}
