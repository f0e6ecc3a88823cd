//! `eport-ca root-crl`: the roots' CRLs re-signed offline with the next cRLNumber, the previous
//! ones kept, the new ones served at once and accepted by OpenSSL; audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ca_server::Ca;
use common::Fixture;
use signer_lib::audit::{EventType, QueryFilter};

#[tokio::test]
async fn re_signs_each_root_crl_with_the_next_number_and_keeps_the_previous_one() {
    let backend = common::sqlite();
    let f = Fixture::new(&backend).await;
    let before = f.ca.crl_der("p256-root").await.unwrap();
    let report = Ca::resign_root_crls_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
    assert_eq!(report.crls.len(), 2);
    for crl in &report.crls {
        assert_eq!(crl.number, 2, "{}", crl.issuer);
        assert!(crl.superseded.ends_with(format!("crl/superseded/{}-root-1.crl", crl.issuer)));
    }
    assert_eq!(std::fs::read(f.data().join("crl/superseded/p256-root-1.crl")).unwrap(), before);
    // Served at once (the file is read per request) and verified by OpenSSL with the root.
    let after = f.ca.crl_der("p256-root").await.unwrap();
    assert_ne!(after, before);
    let dir = f.data();
    for id in ["p256", "sm2"] {
        let (ok, out) =
            common::openssl(dir, &["crl", "-inform", "DER", "-in", &format!("crl/{id}-root.crl"), "-noout", "-text"]);
        assert!(ok && out.contains("X509v3 CRL Number"), "{out}");
    }
    let (ok, out) = common::openssl(
        dir,
        &["crl", "-inform", "DER", "-in", "crl/p256-root.crl", "-CAfile", "certs/p256-root.pem", "-verify", "-noout"],
    );
    assert!(ok && out.contains("verify OK"), "{out}");

    let again = Ca::resign_root_crls_with_clock(f.data(), &f.config, f.clock.clone()).await.unwrap();
    assert!(again.crls.iter().all(|c| c.number == 3));
    assert!(f.data().join("crl/superseded/sm2-root-2.crl").exists());

    let filter = QueryFilter { event: Some(EventType::KeyUse), limit: 100, ..QueryFilter::default() };
    let uses = f.ca.audit_log().query(&filter).await.unwrap();
    assert_eq!(uses.len(), 4, "two roots, twice");
    let filter = QueryFilter {
        event: Some(EventType::CrlIssued),
        object: Some("p256-root crl 3".into()),
        ..QueryFilter::default()
    };
    assert_eq!(f.ca.audit_log().query(&filter).await.unwrap().len(), 1);
    f.close(&backend).await;
}
