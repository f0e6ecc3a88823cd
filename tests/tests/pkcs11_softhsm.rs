//! PKCS#11 keys (`signer_lib::key::pkcs11`) against a real SoftHSM2 2.6: generation, opening,
//! signing, PIN handling, concurrent sessions, reconnection, and CSRs checked by OpenSSL.
//!
//! Every test makes its own token (labels are unique per test); the tokens live in one
//! temporary SoftHSM2 directory per test binary (see `eport_tests::softhsm`, which re-runs this
//! binary under that configuration).

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use eport_tests::softhsm::{USER_PIN, softhsm};
use signer_lib::key::pkcs11::{Pkcs11Key, Pkcs11Uri};
use signer_lib::verify::verify_signature;
use signer_lib::{Error, SignatureAlgorithm, Signer, csr};

/// A fresh token labelled `label`; returns the module to open it with.
fn token(label: &str) -> &'static Path {
    let hsm = softhsm();
    hsm.create_token(label);
    hsm.module()
}

fn generate(label: &str, algorithm: SignatureAlgorithm) -> Pkcs11Key {
    let module = token(label);
    Pkcs11Key::generate(module, &Pkcs11Uri::for_object(label, "sign-key"), Some(USER_PIN), algorithm)
        .unwrap_or_else(|e| panic!("generating {algorithm} on token {label:?}: {e}"))
}

fn assert_signs_and_verifies(key: &dyn Signer, message: &[u8]) {
    let signature = key.sign(message).unwrap_or_else(|e| panic!("signing on {key:?}: {e}"));
    verify_signature(key.public_key_der(), key.algorithm().oid(), message, &signature)
        .unwrap_or_else(|e| panic!("the signature of {key:?} does not verify: {e}"));
    assert!(
        verify_signature(key.public_key_der(), key.algorithm().oid(), b"another message", &signature).is_err(),
        "a signature verified for a message it was not made over"
    );
}

fn openssl_accepts_csr(key: &dyn Signer, name: &str) {
    let request = csr::build(key, "CN=Token User,O=Example,C=CN").unwrap_or_else(|e| panic!("CSR on {key:?}: {e}"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(format!("{name}.csr.pem"));
    let pem = csr::to_pem(&request).expect("PEM of a CSR we just built");
    std::fs::write(&path, pem).expect("writing the CSR");
    let out = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}; apt-get install openssl"));
    assert!(
        out.status.success(),
        "openssl req -verify refused the CSR: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generates_a_p256_key_on_the_token_whose_signatures_verify() {
    let key = generate("gen-p256", SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(key.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);
    assert_signs_and_verifies(&key, b"e-port declaration 2024-000123");
    // An empty message and a long one: the token signs a SHA-256 digest either way.
    assert_signs_and_verifies(&key, b"");
    assert_signs_and_verifies(&key, &vec![0x5a; 1 << 20]);
}

#[test]
fn the_private_key_on_the_token_is_sensitive_and_not_extractable() {
    let _key = generate("attrs", SignatureAlgorithm::EcdsaP256Sha256);
    let session = softhsm().user_session("attrs");
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Label(b"sign-key".to_vec())])
        .unwrap();
    assert_eq!(handles.len(), 1);
    let attributes = session
        .get_attributes(
            handles[0],
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Sign,
                AttributeType::Value,
            ],
        )
        .unwrap();
    for expected in [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::AlwaysSensitive(true),
        Attribute::NeverExtractable(true),
        Attribute::Sign(true),
    ] {
        assert!(attributes.contains(&expected), "{expected:?} not in {attributes:?}");
    }
    // CKA_VALUE of a sensitive key is refused (CKR_ATTRIBUTE_SENSITIVE), so cryptoki leaves
    // it out.
    assert!(!attributes.iter().any(|a| matches!(a, Attribute::Value(_))), "the private value was readable");
}

#[test]
fn opens_a_key_by_label_by_id_and_by_its_own_uri() {
    let module = token("open-by");
    let uri = Pkcs11Uri { id: Some(vec![0x01, 0x02, 0x03]), ..Pkcs11Uri::for_object("open-by", "by-label") };
    let generated = Pkcs11Key::generate(module, &uri, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    // A second key on the token, so that finding the first one has something to tell apart.
    let _other = Pkcs11Key::generate(
        module,
        &Pkcs11Uri::for_object("open-by", "other"),
        Some(USER_PIN),
        SignatureAlgorithm::EcdsaP256Sha256,
    )
    .unwrap();

    let by_label =
        Pkcs11Key::open(module, &"pkcs11:token=open-by;object=by-label".parse().unwrap(), Some(USER_PIN)).unwrap();
    let by_id = Pkcs11Key::open(module, &"pkcs11:token=open-by;id=%01%02%03".parse().unwrap(), Some(USER_PIN)).unwrap();
    let by_uri = Pkcs11Key::open(module, &generated.uri(), Some(USER_PIN)).unwrap();
    for key in [&by_label, &by_id, &by_uri] {
        assert_eq!(key.public_key_der(), generated.public_key_der());
        assert_signs_and_verifies(key, b"opened again");
    }

    let full = generated.uri();
    assert_eq!(full.token.as_deref(), Some("open-by"));
    assert_eq!(full.object.as_deref(), Some("by-label"));
    assert_eq!(full.id.as_deref(), Some(&[1u8, 2, 3][..]));
    assert_eq!(full.module_path.as_deref(), module.to_str());
    assert_eq!(by_id.uri(), full, "opening by id alone finds the label too");
    assert_eq!(full.to_string().parse::<Pkcs11Uri>().unwrap(), full);
}

#[test]
fn a_generated_key_without_an_id_in_its_uri_gets_a_random_16_byte_id() {
    let key = generate("fresh-id", SignatureAlgorithm::EcdsaP256Sha256);
    let id = key.uri().id.unwrap();
    assert_eq!(id.len(), 16);
    assert_ne!(id, vec![0; 16]);
}

#[test]
fn generating_refuses_a_label_or_id_already_on_the_token() {
    let module = token("dup");
    let uri = Pkcs11Uri { id: Some(vec![7]), ..Pkcs11Uri::for_object("dup", "taken") };
    let _first = Pkcs11Key::generate(module, &uri, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    let err = Pkcs11Key::generate(module, &uri, Some(USER_PIN), SignatureAlgorithm::Ed25519).unwrap_err();
    assert!(matches!(err, Error::KeyExists { .. }), "{err:?}");
    let same_id = Pkcs11Uri { id: Some(vec![7]), ..Pkcs11Uri::for_object("dup", "new-label") };
    let err = Pkcs11Key::generate(module, &same_id, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256).unwrap_err();
    assert!(matches!(err, Error::KeyExists { .. }), "{err:?}");
}

#[test]
fn generating_sm2_on_the_token_is_refused_as_unsupported() {
    let module = token("sm2");
    let err =
        Pkcs11Key::generate(module, &Pkcs11Uri::for_object("sm2", "k"), Some(USER_PIN), SignatureAlgorithm::Sm2Sm3)
            .unwrap_err();
    assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{err:?}");
    assert!(err.to_string().contains("vendor"), "{err}");
}

#[test]
fn ed25519_keys_on_the_token_sign_with_eddsa_and_make_csrs_openssl_accepts() {
    // SoftHSM2 2.6 has CKM_EC_EDWARDS_KEY_PAIR_GEN and CKM_EDDSA.
    let key = generate("ed25519", SignatureAlgorithm::Ed25519);
    assert_eq!(key.algorithm(), SignatureAlgorithm::Ed25519);
    assert_signs_and_verifies(&key, b"pure Ed25519 over the message");
    assert_eq!(key.sign(b"x").unwrap().len(), 64);
    let reopened = Pkcs11Key::open(softhsm().module(), &key.uri(), Some(USER_PIN)).unwrap();
    assert_eq!(reopened.public_key_der(), key.public_key_der());
    openssl_accepts_csr(&reopened, "ed25519");
}

#[test]
fn a_csr_made_on_the_token_is_accepted_by_openssl() {
    let key = generate("csr-p256", SignatureAlgorithm::EcdsaP256Sha256);
    let request = csr::build(&key, "CN=Token User,O=Example,C=CN").unwrap();
    csr::parse_and_verify(csr::to_pem(&request).unwrap().as_bytes()).unwrap();
    openssl_accepts_csr(&key, "p256");
}

#[test]
fn a_wrong_pin_gives_wrong_pin_with_the_tokens_retry_flags() {
    let module = token("wrong-pin");
    let uri = Pkcs11Uri::for_object("wrong-pin", "sign-key");
    drop(Pkcs11Key::generate(module, &uri, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256).unwrap());
    // The key's sessions are closed, so this process is no longer logged in to the token.
    let err = Pkcs11Key::open(module, &uri, Some("000000")).unwrap_err();
    match &err {
        // SoftHSM2 sets CKF_USER_PIN_COUNT_LOW after any wrong PIN, never FINAL_TRY.
        Error::WrongPin { label, final_try: false, count_low: true } => assert_eq!(label, "wrong-pin"),
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("000000"));
    Pkcs11Key::open(module, &uri, Some(USER_PIN)).unwrap();
}

#[test]
fn softhsm_never_locks_a_pin_so_many_wrong_pins_stay_wrong_pin() {
    // SoftHSM2 2.6 has no retry counter: it never sets CKF_USER_PIN_LOCKED nor returns
    // CKR_PIN_LOCKED, so Error::PinLocked cannot be provoked here. Its mapping from
    // CKR_PIN_LOCKED (and the refusal to try a PIN on a token flagged locked) is unit-tested in
    // signer-lib (`maps_login_failures_to_pin_errors`). What SoftHSM2 does do: every wrong PIN
    // is CKR_PIN_INCORRECT, and the right one still works afterwards.
    let module = token("no-lockout");
    let uri = Pkcs11Uri::for_object("no-lockout", "sign-key");
    drop(Pkcs11Key::generate(module, &uri, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256).unwrap());
    for attempt in 0..15 {
        let err = Pkcs11Key::open(module, &uri, Some("999999")).unwrap_err();
        assert!(matches!(err, Error::WrongPin { .. }), "attempt {attempt}: {err:?}");
    }
    let key = Pkcs11Key::open(module, &uri, Some(USER_PIN)).unwrap();
    assert_signs_and_verifies(&key, b"still usable");
}

#[test]
fn a_missing_module_gives_a_module_error_naming_its_path() {
    let err = Pkcs11Key::open(
        Path::new("/nonexistent/lib/libpkcs11-nothing.so"),
        &Pkcs11Uri::for_object("t", "k"),
        Some(USER_PIN),
    )
    .unwrap_err();
    match err {
        Error::Pkcs11Module { module, .. } => assert_eq!(module, "/nonexistent/lib/libpkcs11-nothing.so"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_token_that_is_not_there_gives_token_not_found() {
    let module = softhsm().module();
    let err = Pkcs11Key::open(module, &Pkcs11Uri::for_object("no-such-token", "k"), Some(USER_PIN)).unwrap_err();
    match err {
        Error::TokenNotFound { label } => assert_eq!(label, "no-such-token"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_uri_without_a_token_label_must_match_a_single_token() {
    // Two tokens at least (other tests add more): a URI naming only the key is ambiguous.
    let module = token("any-token-1");
    token("any-token-2");
    let uri = Pkcs11Uri { object: Some("sign-key".into()), ..Pkcs11Uri::default() };
    let err = Pkcs11Key::open(module, &uri, Some(USER_PIN)).unwrap_err();
    match &err {
        Error::InvalidPkcs11Uri { reason, .. } => assert!(reason.contains("any-token-1"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_key_that_is_not_there_gives_key_not_found() {
    let module = token("no-key");
    let err = Pkcs11Key::open(module, &Pkcs11Uri::for_object("no-key", "absent"), Some(USER_PIN)).unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { what: "private key", .. }), "{err:?}");
    let by_id = Pkcs11Uri { token: Some("no-key".into()), id: Some(vec![9, 9]), ..Pkcs11Uri::default() };
    let err = Pkcs11Key::open(module, &by_id, Some(USER_PIN)).unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { .. }), "{err:?}");
}

#[test]
fn four_threads_sign_concurrently_on_several_sessions() {
    const THREADS: usize = 4;
    const SIGNATURES: usize = 100;
    let key = Arc::new(generate("threads", SignatureAlgorithm::EcdsaP256Sha256));
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (key, start) = (Arc::clone(&key), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                (0..SIGNATURES)
                    .map(|i| {
                        let message = format!("thread {t} message {i}").into_bytes();
                        let signature = key.sign(&message).unwrap();
                        (message, signature)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for worker in workers {
        for (message, signature) in worker.join().unwrap() {
            verify_signature(key.public_key_der(), key.algorithm().oid(), &message, &signature).unwrap();
        }
    }
    let sessions = key.session_count();
    assert!(sessions > 1, "{THREADS} threads signed on {sessions} session(s)");
    assert!(sessions <= THREADS.min(signer_lib::key::pkcs11::MAX_SESSIONS), "{sessions} sessions");
}

#[test]
fn after_a_logout_signing_fails_once_with_token_gone_then_reconnects() {
    let key = generate("reconnect", SignatureAlgorithm::EcdsaP256Sha256);
    assert_signs_and_verifies(&key, b"before");
    key.danger_logout_all_sessions().unwrap();
    let err = key.sign(b"during").unwrap_err();
    match &err {
        Error::TokenGone { label, .. } => assert_eq!(label, "reconnect"),
        other => panic!("{other:?}"),
    }
    assert_eq!(key.session_count(), 0, "the pool was not dropped");
    // The next call logs in again with the remembered PIN.
    assert_signs_and_verifies(&key, b"after");
    assert_eq!(key.session_count(), 1);
}

#[test]
fn a_token_whose_directory_is_deleted_is_gone_and_stays_gone_in_this_process() {
    let key = generate("deleted", SignatureAlgorithm::EcdsaP256Sha256);
    assert_signs_and_verifies(&key, b"before");
    let directory = softhsm().token_directory("deleted").unwrap();
    std::fs::remove_dir_all(&directory).unwrap();
    let err = key.sign(b"during").unwrap_err();
    assert!(matches!(err, Error::TokenGone { .. }), "{err:?}");
    // SoftHSM2 scans its token directory only in C_Initialize: the token does not come back,
    // and reconnecting says so.
    let err = key.sign(b"after").unwrap_err();
    assert!(matches!(err, Error::TokenNotFound { .. }), "{err:?}");
}

#[test]
fn the_debug_output_of_a_key_shows_no_pin() {
    let module = token("debug");
    let uri = Pkcs11Uri { id: Some(vec![0xaa]), ..Pkcs11Uri::for_object("debug", "sign-key") };
    let key = Pkcs11Key::generate(module, &uri, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    let debug = format!("{key:?}");
    assert!(debug.contains("debug") && debug.contains("sign-key"), "{debug}");
    assert!(!debug.contains(USER_PIN), "{debug}");
}

#[test]
fn a_pin_value_in_a_uri_is_refused() {
    let err = "pkcs11:token=t;object=k?pin-value=123456".parse::<Pkcs11Uri>().unwrap_err();
    assert!(matches!(err, Error::InvalidPkcs11Uri { .. }), "{err:?}");
}
