//! The shipped configuration files load, and a misspelt key is refused.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use ca_server::Config;
use ca_server::config::{AuditHash, KEY_NAMES};

fn manifest(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn loads_the_shipped_example_and_it_equals_the_defaults() {
    let config = Config::load(&manifest("examples/ca.toml")).unwrap();
    assert_eq!(config, Config { public_base_url: Some("http://127.0.0.1:8080".into()), ..Config::default() });
}

#[test]
fn loads_the_shipped_postgres_deployment_and_its_key_file() {
    let config = Config::load(&manifest("../deploy/ca-postgres.toml")).unwrap();
    assert!(config.database.url.as_deref().unwrap().starts_with("postgres://"));
    assert!(config.audit.url.as_deref().unwrap().starts_with("postgres://"));
    assert_eq!(config.audit.hash, AuditHash::Sm3);
    assert_eq!(config.public_base_url(), "http://pki.eport.example");
    // The keys file is resolved against the configuration's directory and names every key.
    let keys_file = config.keys.file.clone().unwrap();
    assert_eq!(keys_file, manifest("../deploy/ca-keys.toml"));
    let keys = hsm_config::KeysConfig::load(&keys_file).unwrap();
    for name in KEY_NAMES {
        assert!(keys.key(name).is_ok(), "{name} missing from {}", keys_file.display());
    }
}

#[test]
fn refuses_a_misspelt_key() {
    let err = Config::from_toml_str("[lockout]\nmax_failure = 5\n").unwrap_err();
    assert!(err.to_string().contains("max_failure"), "{err}");
    let err = Config::from_toml_str("public_base_uri = \"http://x.example\"\n").unwrap_err();
    assert!(err.to_string().contains("public_base_uri"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.toml");
    std::fs::write(&path, "[crl]\nnext_update_hour = 24\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(err.to_string().contains("next_update_hour") && err.to_string().contains("ca.toml"), "{err}");
}
