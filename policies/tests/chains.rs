//! root → issuing CA → end entity for every profile, P-256 and SM2: every signature verifies
//! (with signer-lib; SM2 under the GM/T 0009 default ID), the linter is silent, the key
//! identifiers chain, and the DER round-trips.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use der::{Decode, Encode};
use policies::extension::authority_key_id_of;
use policies::{Profile, lint, oid};
use signer_lib::SignatureAlgorithm;
use x509_cert::Certificate;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};

fn verify(cert: &Certificate, issuer: &Certificate) {
    let tbs = cert.tbs_certificate.to_der().unwrap();
    let spki = issuer.tbs_certificate.subject_public_key_info.to_der().unwrap();
    signer_lib::verify::verify_signature(&spki, cert.signature_algorithm.oid, &tbs, cert.signature.raw_bytes())
        .unwrap_or_else(|e| panic!("{}: {e}", cert.tbs_certificate.subject));
}

fn ext(cert: &Certificate, id: der::asn1::ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate.extensions.iter().flatten().find(|e| e.extn_id == id).map(|e| e.extn_value.as_bytes())
}

fn check_chain(algorithm: SignatureAlgorithm) {
    let chain = common::chain(algorithm);
    assert_eq!(chain.leaves.len(), 8, "every end-entity profile allows {algorithm}");
    verify(&chain.root, &chain.root);
    verify(&chain.issuing, &chain.root);
    let now = common::now();
    let root_profile = Profile::by_id("root-ca").unwrap();
    assert_eq!(lint(&chain.root, &root_profile, None, now), vec![]);
    let ca_profile = Profile::by_id("issuing-ca").unwrap();
    assert_eq!(lint(&chain.issuing, &ca_profile, Some(&chain.root), now), vec![]);
    assert!(ext(&chain.root, oid::AUTHORITY_KEY_IDENTIFIER).is_none(), "a root has no AKI");

    let mut serials = std::collections::HashSet::new();
    for (id, leaf) in &chain.leaves {
        verify(leaf, &chain.issuing);
        let profile = Profile::by_id(id).unwrap();
        assert_eq!(lint(leaf, &profile, Some(&chain.issuing), now), vec![], "{id}");
        let aki = AuthorityKeyIdentifier::from_der(ext(leaf, oid::AUTHORITY_KEY_IDENTIFIER).unwrap()).unwrap();
        let ski = SubjectKeyIdentifier::from_der(ext(&chain.issuing, oid::SUBJECT_KEY_IDENTIFIER).unwrap()).unwrap();
        assert_eq!(aki.key_identifier.as_ref().unwrap().as_bytes(), ski.0.as_bytes(), "{id}");
        assert_eq!(authority_key_id_of(&chain.issuing).unwrap(), ski.0.as_bytes());
        let der = leaf.to_der().unwrap();
        assert_eq!(&Certificate::from_der(&der).unwrap(), leaf, "{id} does not round-trip");
        assert!(serials.insert(leaf.tbs_certificate.serial_number.as_bytes().to_vec()));
        assert_eq!(leaf.signature_algorithm.oid, algorithm.oid(), "{id}");
        assert!(leaf.signature_algorithm.parameters.is_none(), "{id}");
    }
}

#[test]
fn p256_chains_verify_and_lint_clean_for_every_profile() {
    check_chain(SignatureAlgorithm::EcdsaP256Sha256);
}

#[test]
fn sm2_chains_verify_and_lint_clean_for_every_profile() {
    check_chain(SignatureAlgorithm::Sm2Sm3);
}

#[test]
fn sm2_keys_are_id_ec_public_key_with_the_sm2_curve() {
    let chain = common::chain(SignatureAlgorithm::Sm2Sm3);
    for cert in std::iter::once(&chain.root).chain(chain.leaves.iter().map(|(_, c)| c)) {
        let alg = &cert.tbs_certificate.subject_public_key_info.algorithm;
        assert_eq!(alg.oid, signer_lib::algorithm::ID_EC_PUBLIC_KEY);
        let curve: der::asn1::ObjectIdentifier = alg.parameters.as_ref().unwrap().decode_as().unwrap();
        assert_eq!(curve, signer_lib::algorithm::SM2_CURVE);
        assert_eq!(cert.signature_algorithm.oid, signer_lib::algorithm::SM2_WITH_SM3);
    }
}
