//! Shared fixtures for the HTTP tests: a CA served in-process on 127.0.0.1 (port 0, a temporary
//! data directory, a moveable clock) and reqwest clients that trust only our P-256 root and
//! present a bootstrap officer's, a subscriber's or a stranger's client certificate.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Once};

use ca_server::http::problem;
use ca_server::serve::{EmbeddedOcsp, Options, Server};
use ca_server::{Ca, Config, ManualClock};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{EventType, LoggedRecord, QueryFilter};
use signer_lib::key::software::SoftwareKey;
use tempfile::TempDir;
use time::OffsetDateTime;

/// A valid unified social credit code (GB 32100-2015 check character).
pub const USCC: &str = "91350100M000100Y43";

/// The bootstrap identities the ceremony makes.
pub const SECURITY_1: &str = "security-officer-1";
pub const SECURITY_2: &str = "security-officer-2";
pub const AUDIT: &str = "audit-officer";
pub const ADMIN: &str = "system-admin";

static PROVIDER: Once = Once::new();

/// Installs ring as the process's TLS provider (once; as `main` does).
pub fn install_provider() {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A CA served over HTTPS and plain HTTP on loopback.
pub struct TestServer {
    pub dir: TempDir,
    pub config: Config,
    pub clock: Arc<ManualClock>,
    pub ca: Ca,
    pub https: SocketAddr,
    pub http: SocketAddr,
    /// The in-process OCSP responder, when started with one ([`Self::start_with_ocsp`]).
    pub ocsp: Option<EmbeddedOcsp>,
    server: Option<Server>,
}

impl TestServer {
    /// The embedded default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The embedded default configuration, changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(tweak, None).await
    }

    /// The embedded default configuration with the OCSP responder in-process (as `serve` runs
    /// it) on the public listener, with `settings`.
    pub async fn start_with_ocsp(settings: ocsp_responder::Settings) -> Self {
        Self::start_full(|_| {}, Some(settings)).await
    }

    async fn start_full(tweak: impl FnOnce(&mut Config), ocsp: Option<ocsp_responder::Settings>) -> Self {
        install_provider();
        let dir = TempDir::new().unwrap();
        let https = TcpListener::bind("127.0.0.1:0").unwrap();
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let http_addr = http.local_addr().unwrap();
        let mut config = Config::default();
        tweak(&mut config);
        config.set_default_public_base_url(http_addr);
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        Ca::init_with_clock(dir.path(), &config, clock.clone()).await.unwrap();
        let ca = Ca::open_with_clock(dir.path(), &config, clock.clone()).await.unwrap();
        let ocsp = match ocsp {
            Some(settings) => Some(EmbeddedOcsp::start(&ca, settings).await.unwrap()),
            None => None,
        };
        let options = Options { ocsp: ocsp.as_ref().map(EmbeddedOcsp::routes), ..Options::default() };
        let server = Server::start(ca.clone(), https, http, options).unwrap();
        Self {
            https: server.https_addr(),
            http: server.http_addr(),
            dir,
            config,
            clock,
            ca,
            ocsp,
            server: Some(server),
        }
    }

    /// Stops the listeners and closes the CA.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
        drop(self.ocsp.take());
        self.ca.close().await;
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    /// The HTTPS server certificate's name.
    pub fn server_name(&self) -> String {
        self.config.ceremony.tls_dns_names[0].clone()
    }

    /// An API URL.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.server_name(), self.https.port())
    }

    /// A public (plain HTTP) URL.
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn root_pem(&self) -> PathBuf {
        self.data().join("certs").join("p256-root.pem")
    }

    pub fn issuing_pem(&self) -> PathBuf {
        self.data().join("certs").join("p256-issuing.pem")
    }

    fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(der_of(&std::fs::read_to_string(self.root_pem()).unwrap()))).unwrap();
        roots
    }

    fn builder(&self) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.root_store())
    }

    fn reqwest(&self, tls: rustls::ClientConfig) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .resolve(&self.server_name(), self.https)
            .build()
            .unwrap()
    }

    /// A client without a client certificate.
    pub fn anonymous(&self) -> reqwest::Client {
        self.reqwest(self.builder().with_no_client_auth())
    }

    /// A client presenting `chain` (leaf first) and `key`.
    pub fn client_with(&self, chain: Vec<Vec<u8>>, key_pkcs8: Vec<u8>) -> reqwest::Client {
        let chain = chain.into_iter().map(CertificateDer::from).collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
        self.reqwest(self.builder().with_client_auth_cert(chain, key).unwrap())
    }

    /// A client presenting bootstrap identity `name` (its key decrypted with its .pass file).
    pub fn officer(&self, name: &str) -> reqwest::Client {
        let bootstrap = self.data().join("bootstrap");
        let pass = std::fs::read(bootstrap.join(format!("{name}.pass"))).unwrap();
        let pass = String::from_utf8(pass).unwrap();
        let key = SoftwareKey::load(&bootstrap.join(format!("{name}.key")), Some(pass.trim().as_bytes())).unwrap();
        let cert = std::fs::read_to_string(bootstrap.join(format!("{name}.crt"))).unwrap();
        self.client_with(vec![der_of(&cert), self.issuing_der()], key.to_pkcs8_der().unwrap().to_vec())
    }

    /// A client presenting a subscriber's certificate (PEM) and key.
    pub fn subscriber(&self, key: &SoftwareKey, certificate_pem: &str) -> reqwest::Client {
        self.client_with(vec![der_of(certificate_pem), self.issuing_der()], key.to_pkcs8_der().unwrap().to_vec())
    }

    pub fn issuing_der(&self) -> Vec<u8> {
        der_of(&std::fs::read_to_string(self.issuing_pem()).unwrap())
    }

    /// Registers an enterprise (legal representative, single control) as security officer 1.
    pub async fn register_enterprise(&self) -> String {
        let body = json!({
            "kind": "enterprise", "profile": "enterprise-legal-rep", "uscc": USCC,
            "name": "福州示例进出口有限公司", "legal_representative": "张三"
        });
        let response =
            self.officer(SECURITY_1).post(self.url("/api/v1/registrations")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["status"], "pending");
        created["id"].as_str().unwrap().to_owned()
    }

    /// Approves registration `id` as `officer`; the JSON answer.
    pub async fn approve(&self, officer: &str, id: &str) -> reqwest::Response {
        self.officer(officer).post(self.url(&format!("/api/v1/registrations/{id}/approve"))).send().await.unwrap()
    }

    /// A registered and approved enterprise: its enrolment code.
    pub async fn enterprise_code(&self) -> String {
        let id = self.register_enterprise().await;
        let response = self.approve(SECURITY_1, &id).await;
        assert_eq!(response.status(), 200);
        let approval: Value = response.json().await.unwrap();
        assert_eq!(approval["status"], "approved");
        approval["enrolment_code"].as_str().unwrap().to_owned()
    }

    /// Enrols over HTTPS without a client certificate.
    pub async fn enrol(&self, code: &str, csr_pem: &str) -> reqwest::Response {
        self.anonymous()
            .post(self.url("/api/v1/enrol"))
            .json(&json!({ "code": code, "csr": csr_pem }))
            .send()
            .await
            .unwrap()
    }

    /// A subscriber enrolled end to end: its key and the issued JSON.
    pub async fn enrolled_subscriber(&self) -> (SoftwareKey, Value) {
        let code = self.enterprise_code().await;
        let (key, csr) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let response = self.enrol(&code, &csr).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        (key, response.json().await.unwrap())
    }

    /// The audit records carrying `request_id` (the HTTP layer's and the service's).
    pub async fn audit_records(&self, request_id: &str) -> Vec<LoggedRecord> {
        let filter = QueryFilter { limit: 10_000, ..QueryFilter::default() };
        self.ca.audit_log().flush().await.unwrap(); // call records of state changes are queued
        let records = self.ca.audit_log().query(&filter).await.unwrap();
        records.into_iter().filter(|r| r.record.request_id.as_deref() == Some(request_id)).collect()
    }

    /// The audit records of `event`.
    pub async fn audit_events(&self, event: EventType) -> Vec<LoggedRecord> {
        let filter = QueryFilter { event: Some(event), limit: 10_000, ..QueryFilter::default() };
        self.ca.audit_log().flush().await.unwrap();
        self.ca.audit_log().query(&filter).await.unwrap()
    }
}

/// A fresh key and a CSR (PEM) signed by it; the CSR's subject is ignored by the CA.
pub fn csr(algorithm: SignatureAlgorithm) -> (SoftwareKey, String) {
    let key = SoftwareKey::generate(algorithm).unwrap();
    let req = signer_lib::csr::build(&key, "CN=Ignored Subject,O=Whatever,C=US").unwrap();
    (key, signer_lib::csr::to_pem(&req).unwrap())
}

/// The DER of a PEM certificate.
pub fn der_of(pem: &str) -> Vec<u8> {
    der::Encode::to_der(&signer_lib::certificate::parse(pem.as_bytes()).unwrap()).unwrap()
}

/// Runs `openssl` in `dir`; (success, stdout + stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A CSR made by `openssl req` with `key_args` (e.g. `["-newkey", "rsa:1024"]`).
pub fn openssl_csr(dir: &Path, key_args: &[&str]) -> String {
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=openssl/C=CN", "-keyout", "k.pem", "-out", "r.pem"];
    args.extend_from_slice(key_args);
    let (ok, text) = openssl(dir, &args);
    assert!(ok, "openssl req: {text}");
    std::fs::read_to_string(dir.join("r.pem")).unwrap()
}

/// Checks that `response` is a problem document with `status`, and returns it with the
/// request id from the header.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> (Value, String) {
    assert_eq!(response.status().as_u16(), status, "{}", response.url());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, problem::CONTENT_TYPE);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().starts_with(problem::TYPE_PREFIX), "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    (body, request_id)
}
