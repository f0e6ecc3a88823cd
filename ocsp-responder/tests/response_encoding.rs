//! The responses `response::sign` writes by hand around the signature are the bytes the
//! x509-ocsp builder would write, and decode and verify for every algorithm.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{basic, cert_id, issuer, pki, revoked_at, verify};
use der::Encode;
use ocsp_responder::response::{self, Single, generalized};
use ocsp_responder::{CertIdHash, CertificateStatus};
use signer_lib::key::software::SoftwareKey;
use signer_lib::key::{BuilderSigner, SignatureBytes};
use signer_lib::{SignatureAlgorithm, Signer};
use time::{Duration, OffsetDateTime};
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::builder::OcspResponseBuilder;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{CertId, CertStatus, RevokedInfo, SingleResponse};

/// `n` (up to 5) CertIDs with every kind of status; the SHA-256 one has absent parameters.
fn singles(p: &common::Pki, n: usize) -> Vec<(CertId, CertificateStatus)> {
    let statuses = [
        CertificateStatus::Good,
        CertificateStatus::Revoked { time: revoked_at(), reason: Some(CrlReason::KeyCompromise) },
        CertificateStatus::Hold { time: revoked_at() },
        CertificateStatus::NotIssued,
        CertificateStatus::Revoked { time: revoked_at(), reason: None },
    ];
    (0..n)
        .map(|i| {
            let hash = if i == 4 { CertIdHash::Sha256 } else { CertIdHash::Sha1 };
            let mut id = cert_id(&p.issuing, &p.leaves[i % 4], hash);
            if i == 4 {
                id.hash_algorithm.parameters = None;
            }
            (id, statuses[i])
        })
        .collect()
}

fn ours(singles: &[(CertId, CertificateStatus)]) -> Vec<Single> {
    singles
        .iter()
        .map(|(id, status)| Single { cert_id: response::cert_id_value(id).unwrap(), status: *status })
        .collect()
}

/// A signer that signs each message once and repeats that signature (ECDSA signatures are
/// randomised), so that two ways of building a response can be compared octet by octet.
#[derive(Debug)]
struct Repeating {
    key: Arc<SoftwareKey>,
    signed: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
}

impl Signer for Repeating {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.key.algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        self.key.public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, signer_lib::Error> {
        let mut signed = self.signed.lock().unwrap();
        if let Some(signature) = signed.get(message) {
            return Ok(signature.clone());
        }
        let signature = self.key.sign(message)?;
        signed.insert(message.to_vec(), signature.clone());
        Ok(signature)
    }
}

/// What `response::sign` wrote before it assembled responses itself: the x509-ocsp builder.
fn with_builder(
    issuer: &ocsp_responder::Issuer,
    singles: &[(CertId, CertificateStatus)],
    nonce: Option<&[u8]>,
    this: OffsetDateTime,
    next: OffsetDateTime,
) -> Vec<u8> {
    let mut builder = OcspResponseBuilder::new(issuer.responder_id().clone());
    for (cert_id, status) in singles {
        let status = match *status {
            CertificateStatus::Good => CertStatus::good(),
            CertificateStatus::Revoked { time, reason } => CertStatus::Revoked(RevokedInfo {
                revocation_time: generalized(time).unwrap(),
                revocation_reason: reason,
            }),
            CertificateStatus::Hold { time } => CertStatus::Revoked(RevokedInfo {
                revocation_time: generalized(time).unwrap(),
                revocation_reason: Some(CrlReason::CertificateHold),
            }),
            CertificateStatus::NotIssued => CertStatus::unknown(),
        };
        builder = builder.with_single_response(
            SingleResponse::new(cert_id.clone(), status, generalized(this).unwrap())
                .with_next_update(generalized(next).unwrap()),
        );
    }
    if let Some(nonce) = nonce {
        builder = builder.with_extension(Nonce::new(nonce).unwrap()).unwrap();
    }
    let mut signer = BuilderSigner(issuer.signer());
    builder
        .sign::<_, SignatureBytes>(
            &mut signer,
            Some(vec![issuer.responder_certificate().clone()]),
            generalized(this).unwrap(),
        )
        .unwrap()
        .to_der()
        .unwrap()
}

#[test]
fn assembled_responses_equal_the_builders_byte_for_byte() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let signer = Arc::new(Repeating { key: Arc::clone(&p.responder_key), signed: Mutex::default() });
    let issuer = ocsp_responder::Issuer::new(
        p.id.clone(),
        p.issuing.clone(),
        p.responder_cert.clone(),
        signer as Arc<dyn Signer>,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let this = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let next = this + Duration::hours(24);
    let long_nonce = [0x5a; 128];
    let cases = [(1, None), (1, Some(&[1u8][..])), (2, None), (3, None), (5, Some(&long_nonce[..])), (5, None)];
    for (n, nonce) in cases {
        let singles = singles(&p, n);
        let ours = response::sign(&issuer, &ours(&singles), nonce, this, next, this).unwrap();
        assert_eq!(ours, with_builder(&issuer, &singles, nonce, this, next), "{n} CertIDs, nonce {nonce:?}");
    }
}

#[test]
fn assembled_responses_decode_and_verify_for_every_algorithm() {
    // (The certificate profiles allow P-256 and SM2 CAs.)
    for algorithm in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::Sm2Sm3] {
        let p = pki(algorithm, "any");
        let issuer = issuer(&p);
        let this = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let singles = ours(&singles(&p, 5));
        let der = response::sign(&issuer, &singles, Some(&[7; 32]), this, this + Duration::hours(24), this).unwrap();
        let b = basic(&der);
        verify(&b, &p.responder_cert);
        assert_eq!(b.tbs_response_data.responses.len(), 5);
        assert_eq!(b.nonce().unwrap().0.as_bytes(), &[7; 32]);
        // DER is canonical: decoding and re-encoding gives the same octets.
        let reencoded = x509_ocsp::OcspResponse::successful(b).unwrap().to_der().unwrap();
        assert_eq!(reencoded, der, "{algorithm:?}");
    }
}
