//! Every shipped configuration loads; the schema is strict; secrets stay out of files and
//! error messages; a software key opens end to end.

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use hsm_config::{Error, KeyBackend, KeysConfig, open, open_with_env};
use signer_lib::key::software::{KeyFormat, SoftwareKey};
use signer_lib::verify::verify_signature;
use signer_lib::{SignatureAlgorithm, Signer};

/// Every `.toml` file under `dir`, recursively, except build output and Cargo manifests
/// (another schema).
fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                toml_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "toml") && name != "Cargo.toml" {
            out.push(path);
        }
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| ((*k).to_owned(), OsString::from(v))).collect();
    move |name| map.get(name).cloned()
}

fn parse_error(text: &str) -> Error {
    KeysConfig::from_toml_str(text).unwrap_err()
}

#[test]
fn loads_every_toml_file_shipped_under_hsm_config() {
    let mut files = Vec::new();
    toml_files(Path::new(env!("CARGO_MANIFEST_DIR")), &mut files);
    for expected in ["software.toml", "softhsm2.toml", "yubihsm.toml"] {
        assert!(files.iter().any(|f| f.ends_with(Path::new("examples").join(expected))), "{expected} not shipped");
    }
    for file in &files {
        let config = KeysConfig::load(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!config.keys.is_empty(), "{} names no keys", file.display());
    }
}

#[test]
fn example_configs_mean_what_they_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let software = KeysConfig::load(dir.join("software.toml")).unwrap();
    match software.key("issuing-p256").unwrap() {
        KeyBackend::Software { path, passphrase_env, sm2_distid } => {
            assert_eq!(path, &dir.join("keys/issuing-p256.key"), "relative to the file's directory");
            assert_eq!(passphrase_env.as_ref().unwrap().as_str(), "EPORT_ISSUING_PASS");
            assert!(sm2_distid.is_none());
        }
        other => panic!("{other:?}"),
    }
    let yubihsm = KeysConfig::load(dir.join("yubihsm.toml")).unwrap();
    match yubihsm.key("hsm-ed25519").unwrap() {
        KeyBackend::YubiHsm { connector, auth_key_id, password_env, key_id } => {
            assert_eq!(connector.as_str(), "http://127.0.0.1:12345");
            assert_eq!((*auth_key_id, *key_id), (1, 101));
            assert_eq!(password_env.as_str(), "YUBIHSM_AUTH_PASSWORD");
        }
        other => panic!("{other:?}"),
    }
    let softhsm = KeysConfig::load(dir.join("softhsm2.toml")).unwrap();
    match softhsm.key("timestamp-token").unwrap() {
        KeyBackend::Pkcs11 { module, pin_env, .. } => {
            assert!(module.is_none());
            assert_eq!(pin_env.as_ref().unwrap().as_str(), "CA_TOKEN_PIN");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_a_misspelt_field_naming_it() {
    let err = parse_error(
        r#"
[keys.ca-token]
backend = "pkcs11"
uri = "pkcs11:token=ca-token;object=issuing-p256"
pin_enV = "CA_TOKEN_PIN"
"#,
    );
    assert!(matches!(err, Error::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("pin_enV"), "{err}");

    for text in [
        "[key.x]\nbackend = \"software\"\npath = \"k\"\n", // top level
        "[keys.x]\nbackend = \"software\"\npath = \"k\"\npasphrase_env = \"P\"\n", // in a variant
        "[keys.x]\nbackend = \"yubihsm\"\npassword_env = \"P\"\nkey_id = 1\nconector = \"http://h\"\n",
    ] {
        let err = parse_error(text);
        assert!(matches!(err, Error::Parse { .. }), "{text}: {err:?}");
        assert!(err.to_string().contains("unknown field"), "{text}: {err}");
    }
}

#[test]
fn rejects_unknown_or_missing_backends_and_missing_fields() {
    let err = parse_error("[keys.x]\nbackend = \"pkcs12\"\nuri = \"pkcs11:token=a\"\n");
    assert!(err.to_string().contains("pkcs12"), "{err}");
    let err = parse_error("[keys.x]\npath = \"k\"\n");
    assert!(err.to_string().contains("backend"), "{err}");
    let err = parse_error("[keys.x]\nbackend = \"yubihsm\"\nkey_id = 100\n");
    assert!(err.to_string().contains("password_env"), "{err}");
    let err = parse_error("[keys.x]\nbackend = \"yubihsm\"\npassword_env = \"P\"\nkey_id = 70000\n");
    assert!(matches!(err, Error::Parse { .. }), "{err:?}");
}

#[test]
fn rejects_inline_secrets_without_repeating_them() {
    for (text, field) in [
        ("[keys.t]\nbackend = \"pkcs11\"\nuri = \"pkcs11:token=t\"\npin = \"1234\"\n", "pin"),
        ("[keys.t]\nbackend = \"pkcs11\"\nuri = \"pkcs11:token=t\"\nso_pin = \"1234\"\n", "so_pin"),
        ("[keys.s]\nbackend = \"software\"\npath = \"k\"\npassphrase = \"1234\"\n", "passphrase"),
        ("[keys.h]\nbackend = \"yubihsm\"\nkey_id = 1\npassword = \"1234\"\n", "password"),
        ("[keys.t]\nbackend = \"pkcs11\"\nuri = \"pkcs11:token=t;object=k?pin-value=1234\"\n", "uri (pin-value)"),
    ] {
        let err = parse_error(text);
        match &err {
            Error::InlineSecret { key, field: f, .. } => {
                assert_eq!(f, field);
                assert_eq!(key.len(), 1);
            }
            other => panic!("{text}: {other:?}"),
        }
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("1234"), "{shown}");
        assert!(shown.contains("_env"), "the error says what to do instead: {shown}");
    }

    // A secret put where the variable's name belongs is refused without being quoted either.
    for text in [
        "[keys.t]\nbackend = \"pkcs11\"\nuri = \"pkcs11:token=t\"\npin_env = \"12 34\"\n",
        "[keys.t]\nbackend = \"pkcs11\"\nuri = \"pkcs11:token=t\"\npin_env = 1234\n",
        "[keys.h]\nbackend = \"yubihsm\"\nkey_id = 1\npassword_env = \"1234\"\n",
    ] {
        let err = parse_error(text);
        assert!(matches!(err, Error::Parse { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("1234") && !shown.contains("12 34"), "{shown}");
    }
}

#[test]
fn parse_errors_carry_the_file_and_position_but_not_the_source_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(&file, "[keys.x]\nbackend = \"software\"\npath = \"k\"\nkey_pass = \"s3cr3t\"\n").unwrap();
    let err = KeysConfig::load(&file).unwrap_err();
    assert!(matches!(err, Error::InlineSecret { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
    assert!(!format!("{err:?}").contains("s3cr3t"));

    std::fs::write(dir.path().join("bad.toml"), "[keys.x]\nbackend = \"software\"\npath = \"k\"\nsm2_distd = \"x\"\n")
        .unwrap();
    match KeysConfig::load(dir.path().join("bad.toml")).unwrap_err() {
        Error::Parse { origin, line, message, .. } => {
            assert!(origin.ends_with("bad.toml"));
            assert!(line.is_some(), "{message}");
            assert!(message.contains("sm2_distd"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let err = KeysConfig::load(dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
}

#[test]
fn rejects_a_bad_connector_url_when_reading() {
    let err = parse_error(
        "[keys.h]\nbackend = \"yubihsm\"\nconnector = \"https://hsm:12345\"\npassword_env = \"P\"\nkey_id = 1\n",
    );
    assert!(matches!(err, Error::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("http://"), "{err}");
}

#[test]
fn opens_an_encrypted_software_key_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    key.save(&dir.path().join("keys/issuing.key"), Some(b"correct horse"), KeyFormat::Pem).unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(
        &file,
        "[keys.issuing]\nbackend = \"software\"\npath = \"keys/issuing.key\"\npassphrase_env = \"EPORT_TEST_ISSUING_PASS\"\n",
    )
    .unwrap();

    let config = KeysConfig::load(&file).unwrap();
    let backend = config.key("issuing").unwrap();
    let signer = open_with_env(backend, &env_of(&[("EPORT_TEST_ISSUING_PASS", "correct horse")])).unwrap();
    assert_eq!(signer.public_key_der(), key.public_key_der());
    let sig = signer.sign(b"manifest").unwrap();
    verify_signature(signer.public_key_der(), signer.algorithm().oid(), b"manifest", &sig).unwrap();

    let wrong = open_with_env(backend, &env_of(&[("EPORT_TEST_ISSUING_PASS", "wrong")])).unwrap_err();
    assert!(matches!(wrong, Error::Signer(signer_lib::Error::WrongPassphrase)), "{wrong:?}");

    assert!(matches!(config.open("nope"), Err(Error::UnknownKey { .. })));
}

#[test]
fn applies_the_sm2_distid_and_refuses_it_for_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    for alg in [SignatureAlgorithm::Sm2Sm3, SignatureAlgorithm::Ed25519] {
        let key = SoftwareKey::generate(alg).unwrap();
        let path = dir.path().join(alg.name());
        key.save(&path, None, KeyFormat::Der).unwrap();
        let backend = KeysConfig::from_toml_str(&format!(
            "[keys.k]\nbackend = \"software\"\npath = {:?}\nsm2_distid = \"ALICE123@YAHOO.COM\"\n",
            path.display().to_string()
        ))
        .unwrap()
        .keys
        .remove("k")
        .unwrap();
        match alg {
            SignatureAlgorithm::Sm2Sm3 => {
                let signer = open_with_env(&backend, &env_of(&[])).unwrap();
                let sig = signer.sign(b"m").unwrap();
                let options = signer_lib::verify::VerifyOptions { sm2_distid: b"ALICE123@YAHOO.COM" };
                signer_lib::verify::verify_signature_with(signer.public_key_der(), alg.oid(), b"m", &sig, &options)
                    .unwrap();
                // Under the default ID it does not verify: the configured ID was used.
                assert!(verify_signature(signer.public_key_der(), alg.oid(), b"m", &sig).is_err());
            }
            _ => {
                let err = open_with_env(&backend, &env_of(&[])).unwrap_err();
                assert!(matches!(err, Error::Sm2DistidOnOtherKey { .. }), "{err:?}");
            }
        }
    }
}

#[test]
fn a_missing_environment_variable_is_named() {
    let backend = KeysConfig::from_toml_str(
        "[keys.k]\nbackend = \"software\"\npath = \"/nonexistent/k.pem\"\npassphrase_env = \"EPORT_TEST_SURELY_UNSET_7F3A\"\n",
    )
    .unwrap()
    .keys
    .remove("k")
    .unwrap();
    // The real process environment: nothing in the test suite sets this variable.
    let err = open(&backend).unwrap_err();
    assert!(matches!(err, Error::MissingEnv { .. }), "{err:?}");
    assert!(err.to_string().contains("EPORT_TEST_SURELY_UNSET_7F3A"), "{err}");
    assert!(err.to_string().contains("passphrase_env"), "{err}");

    let yubihsm = KeysConfig::from_toml_str(
        "[keys.h]\nbackend = \"yubihsm\"\npassword_env = \"EPORT_TEST_HSM_PW\"\nkey_id = 1\n",
    )
    .unwrap()
    .keys
    .remove("h")
    .unwrap();
    let err = open_with_env(&yubihsm, &env_of(&[])).unwrap_err();
    assert_eq!(err.to_string(), "environment variable EPORT_TEST_HSM_PW (named by password_env) is not set");
}

#[test]
fn a_pkcs11_key_without_module_needs_the_fallback_variable() {
    let backend = KeysConfig::from_toml_str(
        "[keys.t]\nbackend = \"pkcs11\"\nuri = \"pkcs11:token=t;object=k\"\npin_env = \"PIN\"\n",
    )
    .unwrap()
    .keys
    .remove("t")
    .unwrap();
    let err = open_with_env(&backend, &env_of(&[("PIN", "1234")])).unwrap_err();
    assert!(matches!(err, Error::NoPkcs11Module { .. }), "{err:?}");
    assert!(err.to_string().contains(hsm_config::PKCS11_MODULE_ENV), "{err}");
}

#[test]
fn a_yubihsm_key_opens_against_its_connector_only() {
    // `open` takes a URL, so the MockHsm cannot stand behind it (signer-lib's tests cover the
    // key itself); an unreachable connector is a clear error after the password is read.
    let backend = KeysConfig::from_toml_str(
        "[keys.h]\nbackend = \"yubihsm\"\nconnector = \"http://127.0.0.1:1\"\npassword_env = \"PW\"\nkey_id = 100\n",
    )
    .unwrap()
    .keys
    .remove("h")
    .unwrap();
    let err = open_with_env(&backend, &env_of(&[("PW", "sekrit")])).unwrap_err();
    assert!(matches!(err, Error::Signer(signer_lib::Error::YubiHsm(_))), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("sekrit"));
}
