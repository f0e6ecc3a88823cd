#![allow(clippy::unwrap_used)] // test helpers may panic on impossible failures
//! A subscriber's token end to end, against a running CA (HTTPS on loopback) and a SoftHSM2
//! token, with the `eport` binary as a user runs it:
//!
//! register and approve an enterprise (security officer, over mTLS) → `eport token enroll`
//! (after a wrong code, which leaves a reusable key, and a wrong PIN) → `eport token show` →
//! `eport sign` with only a `pkcs11:` URI → `openssl cms -verify -CAfile ROOT` → `eport token
//! renew` over TLS client authentication with the token key → the old serial is revoked →
//! `eport operator authorise` with the token → an operator registration with it is accepted and
//! one without it refused → `eport token change-pin`. And the SM2 path of enrolment with a
//! software key (SoftHSM2 has no SM2).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use ca_server::serve::{Options, Server};
use ca_server::{Ca, Config};
use serde_json::{Value, json};
use signer_lib::key::software::SoftwareKey;
use tempfile::TempDir;

const USCC: &str = "91350100M000100Y43";
const SO_PIN: &str = "12345678";
const PIN: &str = "123456";
const ID_HASH: &str = "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5";

/// SoftHSM2's module where Debian installs it, or `$EPORT_PKCS11_MODULE`.
fn softhsm_module() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("EPORT_PKCS11_MODULE").map(PathBuf::from),
        Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")),
        Some(PathBuf::from("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "SoftHSM2 is required in CI (apt-get install softhsm2)");
        eprintln!("notice: SoftHSM2 is not installed; skipping");
    }
    found
}

/// A SoftHSM2 configuration of this test's own, used by every `eport` it runs.
struct Hsm {
    dir: TempDir,
    module: PathBuf,
}

impl Hsm {
    fn new(module: PathBuf) -> Self {
        let dir = TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!("directories.tokendir = {}\nobjectstore.backend = file\n", dir.path().join("tokens").display()),
        )
        .unwrap();
        Self { dir, module }
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn init_token(&self, label: &str) {
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN])
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        assert!(out.status.success(), "softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The CA, served in-process on loopback (port 0) from a temporary data directory.
struct RunningCa {
    dir: TempDir,
    ca: Ca,
    server: Option<Server>,
    https: SocketAddr,
}

impl RunningCa {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = TempDir::new().unwrap();
        let https = TcpListener::bind("127.0.0.1:0").unwrap();
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = Config::default();
        config.set_default_public_base_url(http.local_addr().unwrap());
        Ca::init(dir.path(), &config).await.unwrap();
        let ca = Ca::open(dir.path(), &config).await.unwrap();
        let server = Server::start(ca.clone(), https, http, Options::default()).unwrap();
        let https = server.https_addr();
        Self { dir, ca, server: Some(server), https }
    }

    fn url(&self) -> String {
        format!("https://eport-ca.localhost:{}", self.https.port())
    }

    fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("certs").join(format!("{name}.pem"))
    }

    fn der(&self, path: &Path) -> Vec<u8> {
        let cert = signer_lib::certificate::parse(&std::fs::read(path).unwrap()).unwrap();
        der::Encode::to_der(&cert).unwrap()
    }

    /// An HTTPS client presenting the bootstrap identity `name` (a security officer).
    fn officer(&self, name: &str) -> reqwest::Client {
        let bootstrap = self.dir.path().join("bootstrap");
        let pass = std::fs::read_to_string(bootstrap.join(format!("{name}.pass"))).unwrap();
        let key = SoftwareKey::load(&bootstrap.join(format!("{name}.key")), Some(pass.trim().as_bytes())).unwrap();
        let chain = vec![self.der(&bootstrap.join(format!("{name}.crt")))];
        let root = self.der(&self.cert_path("p256-root"));
        let tls = signer_lib::tls::client_config(
            &[root],
            Some(signer_lib::tls::ClientIdentity { chain_der: &chain, key: Arc::new(key) }),
        )
        .unwrap();
        reqwest::Client::builder().use_preconfigured_tls(tls).resolve("eport-ca.localhost", self.https).build().unwrap()
    }

    async fn post(&self, client: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
        let response = client.post(format!("{}{path}", self.url())).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers an enterprise for `profile` and approves it; the enrolment code.
    async fn approved(&self, officer: &reqwest::Client, body: Value) -> String {
        let (status, created) = self.post(officer, "/api/v1/registrations", body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap();
        let (status, approved) = self.post(officer, &format!("/api/v1/registrations/{id}/approve"), json!({})).await;
        assert_eq!(status, 200, "{approved}");
        approved["enrolment_code"].as_str().unwrap().to_owned()
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
        self.ca.close().await;
    }
}

fn legal_rep(name: &str) -> Value {
    json!({ "kind": "enterprise", "profile": "enterprise-legal-rep", "uscc": USCC,
            "name": "福州示例进出口有限公司", "legal_representative": name })
}

/// Runs `eport` in `dir` with the SoftHSM2 configuration and the PINs in the environment.
fn eport<S: AsRef<std::ffi::OsStr>>(hsm: &Hsm, dir: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eport"))
        .args(args)
        .current_dir(dir)
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("EPORT_PKCS11_MODULE", &hsm.module)
        .env("EPORT_PIN", PIN)
        .env("EPORT_WRONG_PIN", "999999")
        .env("EPORT_NEW_PIN", "654321")
        .env_remove("EPORT_CA_CERT")
        .output()
        .unwrap()
}

fn ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(hsm: &Hsm, dir: &Path, args: &[S]) -> String {
    let out = eport(hsm, dir, args);
    assert!(
        out.status.success(),
        "eport {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A command that must fail with one clear line (no panic) on stderr; that line.
fn fails<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(hsm: &Hsm, dir: &Path, args: &[S]) -> String {
    let out = eport(hsm, dir, args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success(),
        "eport {args:?} should have failed; stdout {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("eport: error: "), "{stderr}");
    stderr
}

fn serial_in(output: &str) -> String {
    output.lines().find_map(|l| l.trim().strip_prefix("serial")).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_sign_renew_and_authorise_with_a_softhsm_token() {
    let Some(module) = softhsm_module() else { return };
    let hsm = Hsm::new(module);
    hsm.init_token("ent-001");
    let ca = RunningCa::start().await;
    let work = TempDir::new().unwrap();
    let w = work.path();
    let root = ca.cert_path("p256-root");
    let root_arg = root.to_str().unwrap();
    let url = ca.url();
    let officer = ca.officer("security-officer-1");

    let listed = ok(&hsm, w, &["token", "list"]);
    assert!(listed.contains("\"ent-001\"") && listed.contains("PIN ok"), "{listed}");

    let code = ca.approved(&officer, legal_rep("张三")).await;
    let enroll = |code: &str, pin_env: &str| {
        vec![
            "token".to_owned(),
            "enroll".into(),
            "--token".into(),
            "ent-001".into(),
            "--ca".into(),
            url.clone(),
            "--ca-cert".into(),
            root_arg.into(),
            "--code".into(),
            code.to_owned(),
            "--pin-env".into(),
            pin_env.into(),
        ]
    };
    let run_fails = |v: Vec<String>| fails(&hsm, w, &v);

    // A wrong PIN: refused before anything is made.
    let err = run_fails(enroll(&code, "EPORT_WRONG_PIN"));
    assert!(err.contains("wrong PIN for token \"ent-001\""), "{err}");
    // A wrong code: the CA refuses; the new key stays, reported, for the retry.
    let wrong = format!("{}.AAAAAAAAAAAAAAAAAAAAAAAAAA", code.split('.').next().unwrap());
    let err = run_fails(enroll(&wrong, "EPORT_PIN"));
    assert!(err.contains("enrolment code is not valid") && err.contains("reuses it"), "{err}");
    // A root that is not the CA's: the TLS handshake fails; nothing is sent.
    let stranger = SoftwareKey::generate(signer_lib::SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    let fake_root =
        signer_lib::certificate::self_signed_ca(&stranger, "CN=Fake Root,C=CN", std::time::Duration::from_secs(3600))
            .unwrap();
    std::fs::write(w.join("fake-root.pem"), signer_lib::certificate::to_pem(&fake_root).unwrap()).unwrap();
    let mut with_fake = enroll(&code, "EPORT_PIN");
    with_fake[7] = w.join("fake-root.pem").to_str().unwrap().to_owned();
    let err = run_fails(with_fake);
    assert!(err.contains("cannot reach the CA") && err.contains("does not chain to --ca-cert"), "{err}");
    // No root at all: refused, never "insecure".
    let mut no_root = enroll(&code, "EPORT_PIN");
    no_root.drain(6..8);
    let err = run_fails(no_root);
    assert!(err.contains("no CA root to trust"), "{err}");

    // The real enrolment reuses the orphan key.
    let out = eport(&hsm, w, &enroll(&code, "EPORT_PIN"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reusing key"));
    let enrolled = String::from_utf8(out.stdout).unwrap();
    assert!(enrolled.contains("CN=张三") || enrolled.contains("张三"), "{enrolled}");
    let first_serial = serial_in(&enrolled);
    // A second enrolment of the same label is refused (renew instead).
    let err = run_fails(enroll(&code, "EPORT_PIN"));
    assert!(err.contains("already holds an enrolled key"), "{err}");

    let shown = ok(&hsm, w, &["token", "show", "--token", "ent-001", "--pin-env", "EPORT_PIN"]);
    assert!(shown.contains("key \"eport-signing\"") && shown.contains(&first_serial), "{shown}");
    assert!(shown.contains("CA certificate"), "{shown}");

    // Sign with only the URI: certificate and chain come from the token; OpenSSL validates the
    // full chain to the root.
    let key_uri = "pkcs11:token=ent-001;object=eport-signing";
    std::fs::write(w.join("declaration.xml"), "<Declaration><Id>1</Id></Declaration>").unwrap();
    ok(&hsm, w, &["sign", "--key", key_uri, "--pin-env", "EPORT_PIN", "--in", "declaration.xml", "--out", "sig1.p7s"]);
    let verify = |sig: &str| {
        Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", "declaration.xml"])
            .args(["-CAfile", root_arg, "-out", "/dev/null"])
            .current_dir(w)
            .output()
            .unwrap()
    };
    let checked = verify("sig1.p7s");
    assert!(checked.status.success(), "openssl cms -verify: {}", String::from_utf8_lossy(&checked.stderr));

    // Renew over TLS client authentication with the token key.
    let renewed = ok(
        &hsm,
        w,
        &["token", "renew", "--token", "ent-001", "--ca", &url, "--ca-cert", root_arg, "--pin-env", "EPORT_PIN"],
    );
    let second_serial = serial_in(&renewed);
    assert_ne!(first_serial, second_serial);
    let shown = ok(&hsm, w, &["token", "show", "--token", "ent-001", "--pin-env", "EPORT_PIN"]);
    assert!(shown.contains(&second_serial) && !shown.contains(&first_serial), "{shown}");
    assert!(!shown.contains(".renewing"), "{shown}");
    ok(&hsm, w, &["sign", "--key", key_uri, "--pin-env", "EPORT_PIN", "--in", "declaration.xml", "--out", "sig2.p7s"]);
    assert!(verify("sig2.p7s").status.success());
    // The old serial can be revoked.
    let (status, revoked) = ca
        .post(&officer, &format!("/api/v1/certificates/{first_serial}/revoke"), json!({"reason": "superseded"}))
        .await;
    assert_eq!(status, 200, "{revoked}");

    // The legal representative authorises an operator with the token.
    ok(
        &hsm,
        w,
        &[
            "operator",
            "authorise",
            "--key",
            key_uri,
            "--pin-env",
            "EPORT_PIN",
            "--name",
            "李四",
            "--id-number-hash",
            ID_HASH,
            "--out",
            "auth.pem",
        ],
    );
    let authorisation = std::fs::read_to_string(w.join("auth.pem")).unwrap();
    let operator = |authorisation: Option<&str>| {
        let mut body = json!({ "kind": "enterprise", "profile": "enterprise-operator", "uscc": USCC,
            "name": "福州示例进出口有限公司", "legal_representative": "张三", "person_name": "李四" });
        if let Some(a) = authorisation {
            body["authorisation"] = json!(a);
        }
        body
    };
    let (status, problem) = ca.post(&officer, "/api/v1/registrations", operator(None)).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("authorisation"), "{problem}");
    let (status, created) = ca.post(&officer, "/api/v1/registrations", operator(Some(&authorisation))).await;
    assert_eq!(status, 201, "{created}");
    // Replayed: refused.
    let (status, _) = ca.post(&officer, "/api/v1/registrations", operator(Some(&authorisation))).await;
    assert_eq!(status, 400);

    // Change the PIN: the old one stops working, the new one works.
    ok(
        &hsm,
        w,
        &["token", "change-pin", "--token", "ent-001", "--pin-env", "EPORT_PIN", "--new-pin-env", "EPORT_NEW_PIN"],
    );
    let err = fails(&hsm, w, &["token", "show", "--token", "ent-001", "--pin-env", "EPORT_PIN"]);
    assert!(err.contains("wrong PIN"), "{err}");
    ok(&hsm, w, &["token", "show", "--token", "ent-001", "--pin-env", "EPORT_NEW_PIN"]);
    // SM2 on a PKCS#11 token: refused with the reason.
    let err = fails(
        &hsm,
        w,
        &[
            "token",
            "enroll",
            "--token",
            "ent-001",
            "--ca",
            &url,
            "--ca-cert",
            root_arg,
            "--code",
            "x.y",
            "--algorithm",
            "sm2",
            "--pin-env",
            "EPORT_NEW_PIN",
            "--label",
            "sm2",
        ],
    );
    assert!(err.contains("national-crypto"), "{err}");

    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrols_a_software_sm2_key_through_the_same_path() {
    let hsm = Hsm::new(PathBuf::from("/nonexistent-module.so"));
    let ca = RunningCa::start().await;
    let work = TempDir::new().unwrap();
    let w = work.path();
    // The TLS root first, then the SM2 root the SM2 certificate chains to.
    let mut roots = std::fs::read_to_string(ca.cert_path("p256-root")).unwrap();
    roots.push_str(&std::fs::read_to_string(ca.cert_path("sm2-root")).unwrap());
    std::fs::write(w.join("roots.pem"), roots).unwrap();
    let officer = ca.officer("security-officer-1");
    let code = ca.approved(&officer, legal_rep("王五")).await;

    ok(&hsm, w, &["key", "generate", "--algorithm", "sm2", "--key", "sm2.key"]);
    let url = ca.url();
    let enrolled = ok(
        &hsm,
        w,
        &[
            "enroll",
            "--key",
            "sm2.key",
            "--ca",
            &url,
            "--ca-cert",
            "roots.pem",
            "--code",
            &code,
            "--out",
            "sm2.crt",
            "--chain-out",
            "chain.pem",
        ],
    );
    assert!(enrolled.contains("王五"), "{enrolled}");
    let text =
        Command::new("openssl").args(["x509", "-in", "sm2.crt", "-noout", "-text"]).current_dir(w).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("SM2") || text.contains("sm2"), "{text}");
    // Sign with it and verify with the chain.
    std::fs::write(w.join("m.txt"), "报关单").unwrap();
    ok(
        &hsm,
        w,
        &["sign", "--key", "sm2.key", "--cert", "sm2.crt", "--chain", "chain.pem", "--in", "m.txt", "--out", "m.p7s"],
    );
    ok(&hsm, w, &["verify", "--in", "m.txt", "--sig", "m.p7s"]);
    // A used code fails the second time.
    let err = fails(
        &hsm,
        w,
        &["enroll", "--key", "sm2.key", "--ca", &url, "--ca-cert", "roots.pem", "--code", &code, "--out", "again.crt"],
    );
    assert!(err.contains("enrolment code is not valid"), "{err}");
    ca.stop().await;
}
