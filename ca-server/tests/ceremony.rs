//! The key ceremony: what it makes, that OpenSSL accepts it, that it is audited, and that it
//! runs once.
#![allow(clippy::unwrap_used)]

mod common;

use ca_server::{Ca, Error, Role};
use common::{Fixture, backends, openssl};
use signer_lib::audit::{EventType, QueryFilter};

#[tokio::test]
async fn makes_two_hierarchies_the_server_certificate_and_the_bootstrap_officers() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let data = f.data();
        assert_eq!(f.ca.issuer_ids(), ["p256", "sm2"]);
        for id in ["p256", "sm2"] {
            assert!(f.ca.ca_certificate_der(id).is_some());
            assert_eq!(f.ca.ca_certificate_der(&format!("{id}-root")), f.ca.root_certificate_der(id));
            for what in ["root", "issuing", "ocsp", "tsa"] {
                assert!(data.join("certs").join(format!("{id}-{what}.pem")).exists(), "{id}-{what}");
            }
        }
        // P-256: OpenSSL verifies every certificate up to the root.
        for leaf in ["certs/p256-ocsp.pem", "certs/p256-tsa.pem", "certs/tls-server.pem", "bootstrap/audit-officer.crt"]
        {
            let (ok, out) = openssl(
                data,
                &["verify", "-CAfile", "certs/p256-root.pem", "-untrusted", "certs/p256-issuing.pem", leaf],
            );
            assert!(ok, "{leaf}: {out}");
        }
        // SM2: OpenSSL 3 verifies with the GM/T 0009 default distinguishing ID, but applies
        // -vfyopt to one signature only, so each link of the chain is checked on its own.
        for (issuer, cert) in [
            ("certs/sm2-root.pem", "certs/sm2-issuing.pem"),
            ("certs/sm2-issuing.pem", "certs/sm2-ocsp.pem"),
            ("certs/sm2-issuing.pem", "certs/sm2-tsa.pem"),
        ] {
            let (ok, out) = openssl(
                data,
                &["verify", "-vfyopt", "distid:1234567812345678", "-partial_chain", "-CAfile", issuer, cert],
            );
            assert!(ok, "{cert}: {out}");
        }
        // The root CRLs verify under the roots.
        let (ok, out) = openssl(
            data,
            &["crl", "-in", "crl/p256-root.crl", "-inform", "DER", "-CAfile", "certs/p256-root.pem", "-noout"],
        );
        assert!(ok && out.contains("verify OK"), "{out}");

        // Bootstrap identities: files 0600, roles in the database, keys open with their passphrase.
        for (name, role) in [
            ("system-admin", Role::SystemAdministrator),
            ("security-officer-1", Role::SecurityOfficer),
            ("security-officer-2", Role::SecurityOfficer),
            ("audit-officer", Role::AuditOfficer),
        ] {
            for ext in ["crt", "key", "pass"] {
                let path = data.join("bootstrap").join(format!("{name}.{ext}"));
                let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
                assert_eq!(mode & 0o777, 0o600, "{}", path.display());
            }
            let pass = std::fs::read(data.join("bootstrap").join(format!("{name}.pass"))).unwrap();
            assert!(pass.len() >= 43, "passphrase of {name} is {} bytes", pass.len());
            signer_lib::key::software::SoftwareKey::load(
                &data.join("bootstrap").join(format!("{name}.key")),
                Some(&pass),
            )
            .unwrap();
            let caller = match name {
                "system-admin" => &f.admin,
                "security-officer-1" => &f.security1,
                "security-officer-2" => &f.security2,
                _ => &f.audit,
            };
            assert_eq!(caller.role, Some(role), "{name}");
        }
        // The TLS material is the P-256 chain and a software key rustls can load.
        let tls = f.ca.tls_material();
        assert_eq!(tls.server_chain_der.len(), 3);
        assert!(tls.server_key_pkcs8_der.is_some());
        assert_eq!(tls.client_ca_der.len(), 2);
        // The initial CRLs exist.
        for id in ["p256", "sm2"] {
            assert!(!f.ca.crl_der(id).await.unwrap().is_empty());
        }
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn audits_every_key_and_certificate() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let log = f.ca.audit_log();
        let count = |event| {
            let filter = QueryFilter { event: Some(event), ..QueryFilter::default() };
            async move { log.query(&filter).await.unwrap().len() }
        };
        // audit + 4 keys per hierarchy x 2 + tls-server + 4 officers.
        assert_eq!(count(EventType::KeyGenerate).await, 1 + 8 + 1 + 4);
        // 4 certificates per hierarchy x 2 + tls-server + 4 officers.
        assert_eq!(count(EventType::Issue).await, 8 + 1 + 4);
        // The two root CRLs, then the two first CRLs of the issuing CAs.
        assert_eq!(count(EventType::CrlIssued).await, 4);
        log.verify(|_, _| {}).await.unwrap();
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn refuses_to_run_twice() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let err = Ca::init(f.data(), &f.config).await.unwrap_err();
        assert!(matches!(err, Error::AlreadyInitialised { .. }), "{err}");
        // Nor in a new directory against a database that holds a CA (PostgreSQL).
        if backend.database_url.is_some() {
            let other = tempfile::tempdir().unwrap();
            let mut config = f.config.clone();
            config.audit.url = None;
            let err = Ca::init(other.path(), &config).await.unwrap_err();
            assert!(matches!(err, Error::AlreadyInitialised { .. }), "{err}");
        }
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn refuses_to_open_what_was_never_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::open(dir.path(), &ca_server::Config::default()).await.unwrap_err();
    assert!(matches!(err, Error::NotInitialised { .. }), "{err}");
}

#[test]
fn the_command_line_runs_the_ceremony_and_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ca");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eport-ca"))
        .args(["init", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for expected in ["security-officer-1", "audit-officer", "hierarchy sm2", "tls-server", "bootstrap"] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_eport-ca"))
        .args(["init", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
}

#[tokio::test]
async fn an_sm3_audit_log_has_its_heads_signed_by_an_sm2_key() {
    let backend = common::sqlite();
    let mut config = common::config_for(&backend);
    config.audit.hash = ca_server::config::AuditHash::Sm3;
    let f = Fixture::with_config(&backend, config).await;
    assert_eq!(f.ca.audit_log().metadata().hash, signer_lib::audit::HashAlgorithm::Sm3);
    let spki = spki::SubjectPublicKeyInfoRef::try_from(f.ca.audit_log().metadata().public_key.as_slice()).unwrap();
    assert_eq!(signer_lib::algorithm::KeyType::of_spki(&spki).unwrap(), signer_lib::algorithm::KeyType::Sm2);
    f.ca.sign_audit_head().await.unwrap();
    f.ca.audit_log().verify(|_, _| {}).await.unwrap();
    f.close(&backend).await;
}

#[test]
fn generates_configured_software_keys_encrypted_under_their_passphrase_variables() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = String::new();
    for name in ca_server::config::KEY_NAMES {
        keys.push_str(&format!(
            "[keys.{name}]\nbackend = \"software\"\npath = \"hsm/{name}.key\"\npassphrase_env = \"EPORT_TEST_CA_KEY_PASS\"\n\n"
        ));
    }
    std::fs::write(dir.path().join("keys.toml"), keys).unwrap();
    std::fs::write(dir.path().join("ca.toml"), "[keys]\nfile = \"keys.toml\"\n").unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eport-ca"))
        .args(["init", "--config"])
        .arg(dir.path().join("ca.toml"))
        .arg("--data")
        .arg(&data)
        .env("EPORT_TEST_CA_KEY_PASS", "correct horse battery staple")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for name in ca_server::config::KEY_NAMES {
        let path = dir.path().join("hsm").join(format!("{name}.key"));
        assert!(text.contains(&path.display().to_string()), "{name} not reported:\n{text}");
        signer_lib::key::software::SoftwareKey::load(&path, Some(b"correct horse battery staple")).unwrap();
        assert!(signer_lib::key::software::SoftwareKey::load(&path, Some(b"wrong")).is_err());
    }
    // Nothing under <data>/keys: the embedded key store was not used.
    assert!(!data.join("keys").exists());
    // Without the variable, the keys cannot be opened and nothing is generated.
    let other = dir.path().join("data2");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eport-ca"))
        .args(["init", "--config"])
        .arg(dir.path().join("ca.toml"))
        .arg("--data")
        .arg(&other)
        .env_remove("EPORT_TEST_CA_KEY_PASS")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
