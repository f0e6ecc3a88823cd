//! The shipped configuration loads, and a misspelt key is refused.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use ocsp_responder::Settings;
use ocsp_responder::config::Config;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ocsp.toml")
}

#[test]
fn the_shipped_example_loads_with_the_default_settings() {
    let config = Config::load(example()).unwrap();
    assert_eq!(config.settings(), Settings::default());
    assert_eq!(config.issuers.len(), 2);
    assert_eq!(config.issuers[0].id, "p256");
    assert!(config.issuers[0].ca_certificate.as_ref().unwrap().ends_with("examples/certs/issuing-p256.pem"));
    assert!(config.issuers[1].responder_certificate.is_none(), "the sm2 issuer's come from the CA database");
    // The key file it names is a valid hsm-config file.
    let keys = hsm_config::KeysConfig::load(&config.keys).unwrap();
    assert!(keys.key("ocsp-p256").is_ok() && keys.key("ocsp-sm2").is_ok());
}

#[test]
fn a_misspelt_key_is_refused() {
    let text = std::fs::read_to_string(example()).unwrap();
    for (right, wrong) in [
        ("validity_hours", "validty_hours"),
        ("poll_interval_seconds", "poll_interval_secs"),
        ("listen", "listen_on"),
        ("responder_certificate", "responder_cert"),
    ] {
        let misspelt = text.replacen(right, wrong, 1);
        let err = Config::from_toml_str(&misspelt).unwrap_err().to_string();
        assert!(err.contains("unknown field") && err.contains(wrong), "{wrong}: {err}");
    }
}

#[test]
fn an_unknown_hash_or_a_password_in_the_url_is_refused() {
    let text = std::fs::read_to_string(example()).unwrap();
    let md5 = text.replace(r#"presign_hashes = ["sha1"]"#, r#"presign_hashes = ["md5"]"#);
    assert!(Config::from_toml_str(&md5).is_err());
    let password = text.replace("sqlite:/var/lib/eport/ca.db", "postgres://ocsp:hunter2@db/eport");
    let err = Config::from_toml_str(&password).unwrap_err().to_string();
    assert!(err.contains("password_env") && !err.contains("hunter2"), "{err}");
}
