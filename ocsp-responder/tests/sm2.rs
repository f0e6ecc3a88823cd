//! SM2 issuers: responses signed with SM3withSM2 (1.2.156.10197.1.501) by the SM2 OCSP signer,
//! checked by our verifier (signer-lib) and by a second implementation, Python `gmssl`
//! (pure-Python SM2/SM3, Z computed with the default ID 1234567812345678), over the DER of
//! tbsResponseData exactly as RFC 6960 §4.2.1 says it is signed.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{basic, cert_id, pki, request, responder, verify};
use der::Encode;
use ocsp_responder::{CertIdHash, Settings};
use signer_lib::SignatureAlgorithm;

#[tokio::test]
async fn sm2_responses_verify_with_signer_lib_and_with_gmssl() {
    let s = pki(SignatureAlgorithm::Sm2Sm3, "sm2");
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    // One responder for both issuers: each answered by its own signer.
    let (r, _) = responder(&[&p, &s], Settings::default()).await;

    let p256 = basic(&r.respond(&request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None)).await.body);
    assert_eq!(p256.signature_algorithm.oid, signer_lib::algorithm::ECDSA_WITH_SHA256);
    verify(&p256, &p.responder_cert);

    for (hash, nonce) in [(CertIdHash::Sm3, None), (CertIdHash::Sha1, Some(&[0x11u8; 16][..]))] {
        let answer = r.respond(&request(&[cert_id(&s.issuing, &s.leaves[0], hash)], nonce)).await;
        let b = basic(&answer.body);
        assert_eq!(b.signature_algorithm.oid, signer_lib::algorithm::SM2_WITH_SM3);
        verify(&b, &s.responder_cert);

        let tbs = b.tbs_response_data.to_der().unwrap();
        let raw = signer_lib::sm2::der_to_raw(b.signature.as_bytes().unwrap(), 32).unwrap();
        let point = s.responder_cert.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
        assert_eq!((point.len(), point[0]), (65, 0x04));
        assert_eq!(gmssl_verify(&point[1..], &raw, &tbs), "True", "{hash}");
        let mut tampered = tbs.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(gmssl_verify(&point[1..], &raw, &tampered), "False");
    }
}

/// Runs gmssl's `CryptSM2.verify_with_sm3(r‖s hex, data)` and returns what it printed.
fn gmssl_verify(xy: &[u8], raw_signature: &[u8], data: &[u8]) -> String {
    // The public key is set after construction: the constructor's `lstrip("04")` would also
    // eat leading '0'/'4' digits of x.
    const SCRIPT: &str = "
import sys
try:
    from gmssl import sm2
except ImportError as e:
    sys.exit('python3 cannot import gmssl (%s): run `pip install gmssl`' % e)
xy, sig, data = sys.argv[1:4]
c = sm2.CryptSM2(private_key='', public_key='')
c.public_key = xy
print(bool(c.verify_with_sm3(sig, bytes.fromhex(data))))
";
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &hex::encode(xy), &hex::encode(raw_signature), &hex::encode(data)])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install Python 3 and run `pip install gmssl`"));
    assert!(
        out.status.success(),
        "gmssl check failed (run `pip install gmssl` if it is missing): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
