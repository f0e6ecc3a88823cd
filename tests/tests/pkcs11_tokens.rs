#![allow(clippy::unwrap_used)]
//! Token management (`signer_lib::key::pkcs11::token`) against a real SoftHSM2 2.6: listing
//! tokens and their flags, objects on a token, certificates stored next to their keys,
//! deleting a key with everything that carries its id, and changing the user PIN.
//!
//! Every test makes its own token (labels are unique per test); the tokens live in one
//! temporary SoftHSM2 directory per test binary (see `eport_tests::softhsm`, which re-runs this
//! binary under that configuration). PKCS#11 login state is per application and per token, so
//! a test that checks a PIN makes sure nothing of this process is logged in to its token.

use std::path::Path;
use std::time::Duration;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use der::{Decode as _, Encode as _};
use eport_tests::softhsm::{USER_PIN, softhsm};
use signer_lib::certificate::{self_signed_ca, self_signed_end_entity};
use signer_lib::key::pkcs11::token::{ObjectKind, Token, TokenInfo, change_pin, list_tokens};
use signer_lib::key::pkcs11::{Pkcs11Key, Pkcs11Uri};
use signer_lib::{Error, SignatureAlgorithm};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A fresh token labelled `label`; returns the module to open it with.
fn token(label: &str) -> &'static Path {
    let hsm = softhsm();
    hsm.create_token(label);
    hsm.module()
}

fn listed(module: &Path, label: &str) -> TokenInfo {
    let tokens = list_tokens(module).unwrap();
    let mut matching: Vec<_> = tokens.into_iter().filter(|t| t.label == label).collect();
    assert_eq!(matching.len(), 1, "token {label:?} listed {} times", matching.len());
    matching.swap_remove(0)
}

#[test]
fn lists_a_created_token_with_its_label_serial_and_flags() {
    let module = token("listed");
    let info = listed(module, "listed");
    assert!(!info.serial.is_empty(), "{info:?}");
    assert!(info.manufacturer.contains("SoftHSM"), "{info:?}");
    assert!(info.login_required && info.user_pin_initialized, "{info:?}");
    assert!(
        !info.user_pin_count_low && !info.user_pin_final_try && !info.user_pin_locked && !info.user_pin_to_be_changed,
        "{info:?}"
    );
    assert!(!info.protected_authentication_path, "{info:?}");
    // SoftHSM2's free slot holds an uninitialised token, which is not listed.
    assert!(list_tokens(module).unwrap().iter().all(|t| !t.label.is_empty()));
    // Token::info says the same as the listing.
    let opened = Token::open(module, "listed", Some(USER_PIN)).unwrap();
    assert_eq!(opened.label(), "listed");
    let from_token = opened.info().unwrap();
    assert_eq!((from_token.label.as_str(), from_token.serial.as_str()), ("listed", info.serial.as_str()));
}

#[test]
fn a_wrong_pin_gives_wrong_pin_and_the_listing_shows_the_count_low_flag() {
    let module = token("wrong-pin");
    let err = Token::open(module, "wrong-pin", Some("000000")).unwrap_err();
    match &err {
        // SoftHSM2 sets CKF_USER_PIN_COUNT_LOW after any wrong PIN, never FINAL_TRY.
        Error::WrongPin { label, final_try: false, count_low: true } => assert_eq!(label, "wrong-pin"),
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("000000"), "{err}");
    assert!(listed(module, "wrong-pin").user_pin_count_low);
    // The right PIN still works and clears the flag.
    let opened = Token::open(module, "wrong-pin", Some(USER_PIN)).unwrap();
    assert!(!opened.info().unwrap().user_pin_count_low);
}

#[test]
fn opening_a_token_that_is_not_there_gives_token_not_found() {
    let err = Token::open(softhsm().module(), "no-such-token", Some(USER_PIN)).unwrap_err();
    assert!(matches!(&err, Error::TokenNotFound { label } if label == "no-such-token"), "{err:?}");
}

#[test]
fn a_certificate_stored_with_the_key_id_is_found_with_the_key_and_deleted_with_it() {
    let module = token("objects");
    let uri = Pkcs11Uri::for_object("objects", "sign-key");
    let key = Pkcs11Key::generate(module, &uri, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    assert_eq!(key.key_label(), Some("sign-key"));
    let id = key.key_id().to_vec();
    assert_eq!(id.len(), 16);
    assert!(key.certificates().unwrap().is_empty());

    let certificate = self_signed_end_entity(&key, "CN=Token User,O=Example,C=CN", DAY).unwrap();
    let der = certificate.to_der().unwrap();
    let token = Token::open(module, "objects", Some(USER_PIN)).unwrap();
    token.store_certificate("sign-key", &id, &der, false).unwrap();
    // Storing the same certificate again (a repeated enrolment) adds nothing.
    token.store_certificate("sign-key", &id, &der, false).unwrap();

    let objects = token.objects().unwrap();
    let kinds: Vec<_> = objects.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, [ObjectKind::PrivateKey, ObjectKind::PublicKey, ObjectKind::Certificate], "{objects:?}");
    for object in &objects {
        assert_eq!(object.id, id, "{object:?}");
        assert_eq!(object.label.as_deref(), Some("sign-key"), "{object:?}");
    }
    assert_eq!(objects[0].algorithm, Some(SignatureAlgorithm::EcdsaP256Sha256));
    assert_eq!(objects[1].algorithm, Some(SignatureAlgorithm::EcdsaP256Sha256));
    assert_eq!((objects[0].certificate_der.as_ref(), objects[1].certificate_der.as_ref()), (None, None));
    assert_eq!(objects[2].certificate_der.as_deref(), Some(der.as_slice()));
    assert_eq!(objects[2].algorithm, None);

    assert_eq!(key.certificates().unwrap(), std::slice::from_ref(&der));
    assert_eq!(token.certificates_with_id(&id).unwrap(), std::slice::from_ref(&der));
    assert!(token.certificates_with_id(&[0xee]).unwrap().is_empty());

    assert_eq!(token.delete_with_id(&id).unwrap(), 3);
    assert!(token.objects().unwrap().is_empty());
    assert!(key.certificates().unwrap().is_empty());
    assert_eq!(token.delete_with_id(&id).unwrap(), 0);
    drop(key);
    let err = Pkcs11Key::open(module, &uri, Some(USER_PIN)).unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { what: "private key", .. }), "{err:?}");
}

#[test]
fn stored_certificates_carry_subject_issuer_serial_and_category_from_the_der() {
    let module = token("cert-attrs");
    let key = Pkcs11Key::generate(
        module,
        &Pkcs11Uri::for_object("cert-attrs", "ca-key"),
        Some(USER_PIN),
        SignatureAlgorithm::Ed25519,
    )
    .unwrap();
    let leaf = self_signed_end_entity(&key, "CN=Leaf,O=Example,C=CN", DAY).unwrap().to_der().unwrap();
    let ca = self_signed_ca(&key, "CN=Root CA,O=Example,C=CN", DAY).unwrap().to_der().unwrap();
    let token = Token::open(module, "cert-attrs", Some(USER_PIN)).unwrap();
    token.store_certificate("leaf", key.key_id(), &leaf, false).unwrap();
    token.store_certificate("root", &[0xca], &ca, true).unwrap();

    let session = softhsm().user_session("cert-attrs");
    for (label, der, category) in [("leaf", &leaf, 1u8), ("root", &ca, 2u8)] {
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE), Attribute::Label(label.as_bytes().to_vec())])
            .unwrap();
        assert_eq!(handles.len(), 1, "{label}");
        let attributes = session
            .get_attributes(
                handles[0],
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Subject,
                    AttributeType::Issuer,
                    AttributeType::SerialNumber,
                ],
            )
            .unwrap();
        let parsed = x509_cert::Certificate::from_der(der).unwrap();
        let tbs = &parsed.tbs_certificate;
        for expected in [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Subject(tbs.subject.to_der().unwrap()),
            Attribute::Issuer(tbs.issuer.to_der().unwrap()),
            Attribute::SerialNumber(tbs.serial_number.to_der().unwrap()),
        ] {
            assert!(attributes.contains(&expected), "{label}: {expected:?} not in {attributes:?}");
        }
        // cryptoki 0.12 cannot read CKA_CERTIFICATE_CATEGORY back (it has no name for it), but
        // the token can search by it.
        let category_attribute = Attribute::VendorDefined((
            AttributeType::VendorDefined(0x87),
            std::ffi::c_ulong::from(category).to_ne_bytes().to_vec(),
        ));
        let by_category = session
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Label(label.as_bytes().to_vec()),
                category_attribute,
            ])
            .unwrap();
        assert_eq!(by_category, handles, "{label} is not of category {category}");
    }
    assert_eq!(token.certificates_with_id(&[0xca]).unwrap(), [ca]);
}

#[test]
fn storing_bytes_that_are_not_a_certificate_is_refused_before_touching_the_token() {
    let module = token("not-a-cert");
    let token = Token::open(module, "not-a-cert", Some(USER_PIN)).unwrap();
    let err = token.store_certificate("junk", &[1], b"not DER", false).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(token.objects().unwrap().is_empty());
}

#[test]
fn deleting_by_an_empty_id_deletes_nothing() {
    let module = token("empty-id");
    let _key = Pkcs11Key::generate(
        module,
        &Pkcs11Uri::for_object("empty-id", "k"),
        Some(USER_PIN),
        SignatureAlgorithm::EcdsaP256Sha256,
    )
    .unwrap();
    let token = Token::open(module, "empty-id", Some(USER_PIN)).unwrap();
    assert_eq!(token.delete_with_id(&[]).unwrap(), 0);
    assert_eq!(token.objects().unwrap().len(), 2);
}

#[test]
fn changing_the_pin_needs_the_old_one_and_afterwards_only_the_new_one_logs_in() {
    const NEW_PIN: &str = "654321";
    let module = token("change-pin");
    // Nothing of this process is logged in to the token, so each login checks its PIN.
    let err = change_pin(module, "change-pin", "000000", NEW_PIN).unwrap_err();
    assert!(matches!(&err, Error::WrongPin { label, .. } if label == "change-pin"), "{err:?}");
    assert!(!err.to_string().contains("000000") && !err.to_string().contains(NEW_PIN), "{err}");
    // The old PIN is unchanged.
    drop(Token::open(module, "change-pin", Some(USER_PIN)).unwrap());

    change_pin(module, "change-pin", USER_PIN, NEW_PIN).unwrap();
    let err = Token::open(module, "change-pin", Some(USER_PIN)).unwrap_err();
    assert!(matches!(err, Error::WrongPin { .. }), "{err:?}");
    drop(Token::open(module, "change-pin", Some(NEW_PIN)).unwrap());
}

#[test]
fn a_new_pin_the_token_refuses_gives_new_pin_rejected_with_the_length_limits() {
    let module = token("short-pin");
    let err = change_pin(module, "short-pin", USER_PIN, "12").unwrap_err();
    match &err {
        // SoftHSM2 takes PINs of 4 to 255 characters.
        Error::NewPinRejected { label, reason } => {
            assert_eq!(label, "short-pin");
            assert!(reason.contains("4 to 255"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    drop(Token::open(module, "short-pin", Some(USER_PIN)).unwrap());
}

#[test]
fn a_token_whose_directory_is_deleted_is_gone() {
    let module = token("vanishing");
    let key = Pkcs11Key::generate(
        module,
        &Pkcs11Uri::for_object("vanishing", "sign-key"),
        Some(USER_PIN),
        SignatureAlgorithm::EcdsaP256Sha256,
    )
    .unwrap();
    let der = self_signed_end_entity(&key, "CN=Token User", DAY).unwrap().to_der().unwrap();
    let token = Token::open(module, "vanishing", Some(USER_PIN)).unwrap();
    std::fs::remove_dir_all(softhsm().token_directory("vanishing").unwrap()).unwrap();
    // SoftHSM2 answers CKR_GENERAL_ERROR here, not CKR_DEVICE_REMOVED; the token's absence
    // from its slot is what tells.
    let err = token.info().unwrap_err();
    assert!(matches!(&err, Error::TokenGone { label, .. } if label == "vanishing"), "{err:?}");
    let err = token.store_certificate("sign-key", key.key_id(), &der, false).unwrap_err();
    assert!(matches!(&err, Error::TokenGone { label, .. } if label == "vanishing"), "{err:?}");
    assert!(list_tokens(module).unwrap().iter().all(|t| t.label != "vanishing"));
}
