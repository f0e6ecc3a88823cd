//! Revocation, suspension and CRLs, checked by OpenSSL and pkilint.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use ca_server::{CertificateStatus, Error, Issued};
use common::{Fixture, backends, csr, der_of, openssl};
use der::Decode;
use signer_lib::SignatureAlgorithm;
use x509_cert::crl::CertificateList;

async fn enrolled(f: &Fixture, ip: u8, algorithm: SignatureAlgorithm) -> Issued {
    let (_, code) = f.approved_enterprise().await;
    let (_, pem) = csr(algorithm);
    f.ca.enrol(&Fixture::anonymous([10, 9, 0, ip]), &code, &pem).await.unwrap()
}

/// Writes the P-256 root, issuing CA, the current CRL (DER and PEM) and the given leaves.
async fn materials(f: &Fixture, dir: &Path, leaves: &[(&str, &Issued)]) {
    std::fs::write(dir.join("root.pem"), &leaves[0].1.chain_pem[1]).unwrap();
    std::fs::write(dir.join("issuing.pem"), &leaves[0].1.chain_pem[0]).unwrap();
    for (name, issued) in leaves {
        std::fs::write(dir.join(format!("{name}.pem")), &issued.certificate_pem).unwrap();
    }
    let crl = f.ca.crl_der("p256").await.unwrap();
    let _ = std::fs::remove_file(dir.join("crl.der"));
    std::fs::write(dir.join("crl.der"), &crl).unwrap();
    let (ok, out) = openssl(dir, &["crl", "-in", "crl.der", "-inform", "DER", "-out", "crl.pem"]);
    assert!(ok, "{out}");
}

fn verify_with_crl(dir: &Path, leaf: &str) -> (bool, String) {
    openssl(
        dir,
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            &format!("{leaf}.pem"),
        ],
    )
}

fn crl_number(der: &[u8]) -> Vec<u8> {
    let crl = CertificateList::from_der(der).unwrap();
    let ext = crl
        .tbs_cert_list
        .crl_extensions
        .unwrap()
        .into_iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_CRL_NUMBER)
        .unwrap();
    ext.extn_value.as_bytes().to_vec()
}

#[tokio::test]
async fn a_revoked_certificate_fails_openssl_crl_checks_and_a_good_one_passes() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let good = enrolled(&f, 1, SignatureAlgorithm::EcdsaP256Sha256).await;
        let bad = enrolled(&f, 2, SignatureAlgorithm::EcdsaP256Sha256).await;
        let held = enrolled(&f, 3, SignatureAlgorithm::EcdsaP256Sha256).await;
        let before = f.ca.crl_der("p256").await.unwrap();

        let info = f.ca.revoke(&f.security1, &bad.serial_hex.to_uppercase(), "keyCompromise").await.unwrap();
        assert_eq!(info.status, CertificateStatus::Revoked);
        assert_eq!(info.revocation_reason.as_deref(), Some("keyCompromise"));
        let info = f.ca.hold(&f.security2, &held.serial_hex).await.unwrap();
        assert_eq!(
            (info.status, info.revocation_reason.as_deref()),
            (CertificateStatus::Hold, Some("certificateHold"))
        );

        let dir = tempfile::tempdir().unwrap();
        materials(&f, dir.path(), &[("good", &good), ("bad", &bad), ("held", &held)]).await;
        let (ok, out) =
            openssl(dir.path(), &["crl", "-in", "crl.der", "-inform", "DER", "-CAfile", "issuing.pem", "-noout"]);
        assert!(ok && out.contains("verify OK"), "{out}");
        let (ok, out) = verify_with_crl(dir.path(), "good");
        assert!(ok, "good: {out}");
        let (ok, out) = verify_with_crl(dir.path(), "bad");
        assert!(!ok && out.contains("revoked"), "bad: {out}");
        let (ok, out) = verify_with_crl(dir.path(), "held");
        assert!(!ok && out.contains("revoked"), "held: {out}");
        let (_, text) = openssl(dir.path(), &["crl", "-in", "crl.pem", "-noout", "-text"]);
        assert!(text.contains("Key Compromise") && text.contains("Certificate Hold"), "{text}");
        assert!(text.contains("X509v3 CRL Number") && text.contains("X509v3 Authority Key Identifier"), "{text}");
        // Every regeneration has a larger cRLNumber.
        let after = f.ca.crl_der("p256").await.unwrap();
        assert!(crl_number(&after) > crl_number(&before));

        // Released from hold: good again, and off the next CRL.
        let info = f.ca.release(&f.security1, &held.serial_hex).await.unwrap();
        assert_eq!((info.status, info.revocation_reason), (CertificateStatus::Good, None));
        materials(&f, dir.path(), &[("good", &good), ("held", &held)]).await;
        let (ok, out) = verify_with_crl(dir.path(), "held");
        assert!(ok, "released: {out}");
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn the_full_chain_checks_with_the_root_crl() {
    let backend = common::sqlite();
    let f = Fixture::new(&backend).await;
    let good = enrolled(&f, 1, SignatureAlgorithm::EcdsaP256Sha256).await;
    let dir = tempfile::tempdir().unwrap();
    materials(&f, dir.path(), &[("good", &good)]).await;
    std::fs::write(dir.path().join("arl.der"), f.ca.crl_der("p256-root").await.unwrap()).unwrap();
    let (ok, out) = openssl(dir.path(), &["crl", "-in", "arl.der", "-inform", "DER", "-out", "arl.pem"]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        dir.path(),
        &[
            "verify",
            "-crl_check_all",
            "-CRLfile",
            "crl.pem",
            "-CRLfile",
            "arl.pem",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "good.pem",
        ],
    );
    assert!(ok, "{out}");
    f.close(&backend).await;
}

#[tokio::test]
async fn the_sm2_crl_verifies_under_the_sm2_issuing_ca() {
    let backend = common::sqlite();
    let f = Fixture::new(&backend).await;
    let sm2 = enrolled(&f, 1, SignatureAlgorithm::Sm2Sm3).await;
    f.ca.revoke(&f.security1, &sm2.serial_hex, "affiliationChanged").await.unwrap();
    let crl = f.ca.crl_der("sm2").await.unwrap();
    let list = CertificateList::from_der(&crl).unwrap();
    assert_eq!(list.tbs_cert_list.revoked_certificates.as_ref().unwrap().len(), 1);
    // Checked with our verifier (OpenSSL's `crl -CAfile` has no distinguishing-ID option).
    let issuing = signer_lib::certificate::parse(sm2.chain_pem[0].as_bytes()).unwrap();
    let spki = der::Encode::to_der(&issuing.tbs_certificate.subject_public_key_info).unwrap();
    let tbs = der::Encode::to_der(&list.tbs_cert_list).unwrap();
    signer_lib::verify::verify_signature(&spki, list.signature_algorithm.oid, &tbs, list.signature.raw_bytes())
        .unwrap();
    f.close(&backend).await;
}

#[tokio::test]
async fn the_crl_passes_pkilint() {
    if std::process::Command::new("lint_crl").arg("--help").output().is_err() {
        eprintln!("notice: pkilint (lint_crl) is not installed; skipping");
        return;
    }
    let backend = common::sqlite();
    let f = Fixture::new(&backend).await;
    let a = enrolled(&f, 1, SignatureAlgorithm::EcdsaP256Sha256).await;
    let b = enrolled(&f, 2, SignatureAlgorithm::EcdsaP256Sha256).await;
    let c = enrolled(&f, 3, SignatureAlgorithm::EcdsaP256Sha256).await;
    f.ca.revoke(&f.security1, &a.serial_hex, "keyCompromise").await.unwrap();
    f.ca.revoke(&f.security1, &b.serial_hex, "unspecified").await.unwrap();
    f.ca.hold(&f.security1, &c.serial_hex).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    materials(&f, dir.path(), &[("a", &a)]).await;
    std::fs::write(dir.path().join("arl.der"), f.ca.crl_der("p256-root").await.unwrap()).unwrap();
    for (file, kind) in [("crl.der", "CRL"), ("arl.der", "ARL")] {
        for profile in ["PKIX", "BR"] {
            let out = std::process::Command::new("lint_crl")
                .current_dir(dir.path())
                .args(["lint", "-t", kind, "-p", profile, "-s", "ERROR", "--document-format", "DER", file])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            // The CA/Browser Forum profile prohibits suspension; this private PKI needs it
            // (the issue asks for certificateHold), so that one finding is expected there.
            let unexpected: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("(ERROR)") || l.contains("(FATAL)"))
                .filter(|l| !(profile == "BR" && l.contains("Prohibited reason code \"certificateHold\"")))
                .collect();
            assert!(unexpected.is_empty(), "{file} {profile}: {text}{}", String::from_utf8_lossy(&out.stderr));
            if profile == "PKIX" {
                assert!(text.trim().is_empty(), "{file} {profile}: {text}");
            }
        }
    }
    f.close(&backend).await;
}

#[tokio::test]
async fn refuses_wrong_transitions_and_bad_input() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let issued = enrolled(&f, 1, SignatureAlgorithm::EcdsaP256Sha256).await;
        let s = issued.serial_hex.as_str();
        // Release only from hold.
        assert!(matches!(f.ca.release(&f.security1, s).await, Err(Error::Conflict { .. })));
        // Reasons: RFC 5280 names only, and not hold / removeFromCRL / CA compromise here.
        for reason in ["key_compromise", "certificateHold", "removeFromCRL", "cACompromise", ""] {
            let err = f.ca.revoke(&f.security1, s, reason).await.unwrap_err();
            assert!(matches!(err, Error::BadRequest { what: "reason", .. }), "{reason}: {err}");
        }
        // Serials: hex only, no colons.
        let colons = s.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":");
        for serial in [colons.as_str(), "xyz", ""] {
            let err = f.ca.revoke(&f.security1, serial, "keyCompromise").await.unwrap_err();
            assert!(matches!(err, Error::BadRequest { what: "serial", .. }), "{serial}: {err}");
        }
        assert!(matches!(f.ca.revoke(&f.security1, "4f4f", "keyCompromise").await, Err(Error::NotFound { .. })));
        f.ca.hold(&f.security1, s).await.unwrap();
        assert!(matches!(f.ca.hold(&f.security1, s).await, Err(Error::Conflict { .. })));
        // From hold to revoked is allowed; then nothing more.
        f.ca.revoke(&f.security1, s, "cessationOfOperation").await.unwrap();
        assert!(matches!(f.ca.revoke(&f.security1, s, "keyCompromise").await, Err(Error::Conflict { .. })));
        assert!(matches!(f.ca.release(&f.security1, s).await, Err(Error::Conflict { .. })));
        assert!(matches!(f.ca.hold(&f.security1, s).await, Err(Error::Conflict { .. })));
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn a_subscriber_may_revoke_its_own_certificate_for_key_compromise_only() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let mine = enrolled(&f, 1, SignatureAlgorithm::EcdsaP256Sha256).await;
        let theirs = enrolled(&f, 2, SignatureAlgorithm::EcdsaP256Sha256).await;
        let me = f.ca.identify(&der_of(&mine.certificate_pem), None, "t").await.unwrap();
        for (serial, reason) in [(&mine.serial_hex, "superseded"), (&theirs.serial_hex, "keyCompromise")] {
            let err = f.ca.revoke(&me, serial, reason).await.unwrap_err();
            assert!(matches!(err, Error::Forbidden { .. }), "{reason}: {err}");
        }
        assert!(matches!(f.ca.hold(&me, &mine.serial_hex).await, Err(Error::Forbidden { .. })));
        let info = f.ca.revoke(&me, &mine.serial_hex, "keyCompromise").await.unwrap();
        assert_eq!(info.status, CertificateStatus::Revoked);
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn regenerates_on_schedule_with_next_update_from_the_configuration() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let first = CertificateList::from_der(&f.ca.crl_der("p256").await.unwrap()).unwrap();
        let this = first.tbs_cert_list.this_update.to_unix_duration().as_secs();
        let next = first.tbs_cert_list.next_update.unwrap().to_unix_duration().as_secs();
        assert_eq!(next - this, 24 * 3600);
        f.clock.advance(time::Duration::hours(1));
        f.ca.regenerate_crls().await.unwrap();
        let second = f.ca.crl_der("p256").await.unwrap();
        assert!(crl_number(&second) > crl_number(&der::Encode::to_der(&first).unwrap()));
        // Past nextUpdate, asking for the CRL regenerates it.
        f.clock.advance(time::Duration::hours(25));
        let third = CertificateList::from_der(&f.ca.crl_der("p256").await.unwrap()).unwrap();
        assert!(
            third.tbs_cert_list.this_update.to_unix_duration()
                > first.tbs_cert_list.next_update.unwrap().to_unix_duration()
        );
        assert!(matches!(f.ca.crl_der("nope").await, Err(Error::NotFound { .. })));
        f.close(&backend).await;
    }
}
