//! The responder under load: a P-256 hierarchy with N certificates in an in-memory source,
//! served on 127.0.0.1:PORT, plus the files `benches/load.sh` needs to drive it and its peers
//! (`openssl ocsp -index`, nginx).
//!
//! ```text
//! cargo run --release -p ocsp-responder --example load_server -- OUT_DIR PORT [CERTS]
//! ```
//!
//! Writes to OUT_DIR: `root.pem`, `issuing.pem`, `ocsp.pem`, `ocsp.key` (unencrypted, for
//! `openssl ocsp -rsigner/-rkey`), `leaf.pem` (a good certificate), `index.txt` (OpenSSL CA
//! database of all certificates), `req.der` (no nonce), `req-nonce.der` (32-octet nonce),
//! `get-path.txt` (`/ocsp/<url-encoded base64 of req.der>`), `response.der` (our pre-signed
//! answer to `req.der`, for nginx to serve as a static file of the same size). Prints `ready`
//! once everything is pre-signed, then serves until killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failing loudly is right

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use der::Encode;
use ocsp_responder::source::memory::MemorySource;
use ocsp_responder::{CertificateStatus, Issuer, IssuerId, Responder, Serial, Settings, router};
use policies::{IssueRequest, IssuerUrls, Profiles, SubjectData, issue, random_serial};
use signer_lib::key::software::{KeyFormat, SoftwareKey};
use signer_lib::{SignatureAlgorithm, Signer};
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;
use x509_ocsp::builder::OcspRequestBuilder;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{CertId, Request};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect("usage: load_server OUT_DIR PORT [CERTS]"));
    let port: u16 = args.next().expect("PORT").parse().expect("PORT is a number");
    let count: usize = args.next().map_or(1000, |n| n.parse().expect("CERTS is a number"));
    std::fs::create_dir_all(&out).unwrap();
    // LOAD_SERVER_WORKERS: tokio worker threads (default: one per CPU, as `eport-ocsp`).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = std::env::var("LOAD_SERVER_WORKERS").ok().and_then(|w| w.parse().ok()) {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().unwrap();
    runtime.block_on(run(out, port, count));
}

fn authority(name: &str) -> SubjectData {
    SubjectData::Authority { organization: "E-Port Load Test".into(), common_name: name.into() }
}

fn make(
    profiles: &Profiles,
    profile: &str,
    subject: SubjectData,
    issuer: Option<(&Certificate, &dyn Signer)>,
    key: &dyn Signer,
    not_before: OffsetDateTime,
) -> Certificate {
    let profile = profiles.get(profile).unwrap();
    let request = IssueRequest {
        profile,
        subject,
        subject_spki_der: key.public_key_der().to_vec(),
        not_before,
        not_after: not_before + Duration::days(30),
        serial: random_serial(),
        urls: IssuerUrls {
            ocsp: Some("http://127.0.0.1/ocsp".into()),
            ca_issuers: Some("http://127.0.0.1/ca.cer".into()),
            crl: Some("http://127.0.0.1/ca.crl".into()),
        },
    };
    match issuer {
        None => issue(None, key, &request, not_before).unwrap(),
        Some((cert, signer)) => issue(Some(cert), signer, &request, not_before).unwrap(),
    }
}

fn pem(cert: &Certificate) -> String {
    signer_lib::certificate::to_pem(cert).unwrap()
}

/// OpenSSL `index.txt` time: YYMMDDHHMMSSZ.
fn index_time(t: OffsetDateTime) -> String {
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn run(out: PathBuf, port: u16, count: usize) {
    let profiles = Profiles::embedded().unwrap();
    let t = (OffsetDateTime::now_utc() - Duration::hours(1)).replace_nanosecond(0).unwrap();
    let alg = SignatureAlgorithm::EcdsaP256Sha256;
    let root_key = SoftwareKey::generate(alg).unwrap();
    let root = make(&profiles, "root-ca", authority("Load Root"), None, &root_key, t);
    let ca_key = SoftwareKey::generate(alg).unwrap();
    let issuing = make(&profiles, "issuing-ca", authority("Load Issuing CA"), Some((&root, &root_key)), &ca_key, t);
    let ocsp_key = Arc::new(SoftwareKey::generate(alg).unwrap());
    let ocsp =
        make(&profiles, "ocsp-signer", authority("Load OCSP Responder"), Some((&issuing, &ca_key)), &*ocsp_key, t);

    // Leaves share one key: only their serials matter here.
    let leaf_key = SoftwareKey::generate(alg).unwrap();
    let id = IssuerId::from("p256");
    let source = Arc::new(MemorySource::new());
    let mut index = String::new();
    let mut first = None;
    for n in 0..count {
        let subject = SubjectData::Platform { common_name: format!("load {n}"), dns_names: vec![] };
        let leaf = make(&profiles, "tls-client", subject, Some((&issuing, &ca_key)), &leaf_key, t);
        let serial = Serial::from_der_content(leaf.tbs_certificate.serial_number.as_bytes()).unwrap();
        let expiry = index_time(t + Duration::days(30));
        let serial_hex = serial.to_hex().to_uppercase();
        if n % 10 == 9 {
            source.set(&id, serial, CertificateStatus::Revoked { time: t, reason: None });
            index.push_str(&format!("R\t{expiry}\t{}\t{serial_hex}\tunknown\t/CN=load {n}\n", index_time(t)));
        } else {
            source.set(&id, serial, CertificateStatus::Good);
            index.push_str(&format!("V\t{expiry}\t\t{serial_hex}\tunknown\t/CN=load {n}\n"));
        }
        if first.is_none() {
            first = Some(leaf);
        }
    }
    let leaf = first.expect("at least one certificate");

    std::fs::write(out.join("root.pem"), pem(&root)).unwrap();
    std::fs::write(out.join("issuing.pem"), pem(&issuing)).unwrap();
    std::fs::write(out.join("ocsp.pem"), pem(&ocsp)).unwrap();
    std::fs::write(out.join("leaf.pem"), pem(&leaf)).unwrap();
    std::fs::write(out.join("index.txt"), index).unwrap();
    let _ = std::fs::remove_file(out.join("ocsp.key"));
    ocsp_key.save(&out.join("ocsp.key"), None, KeyFormat::Pem).unwrap();

    let issuer =
        Issuer::new(id, issuing.clone(), ocsp, Arc::clone(&ocsp_key) as Arc<dyn Signer>, OffsetDateTime::now_utc())
            .unwrap();
    let settings = Settings { on_demand_per_second: 1_000_000, ..Settings::default() };
    let responder = Responder::new(vec![issuer], source as _, settings).unwrap();
    responder.start().await.unwrap();
    let _background = responder.spawn_background();

    let cert_id = CertId::from_issuer::<sha1::Sha1>(&issuing, leaf.tbs_certificate.serial_number.clone()).unwrap();
    let plain = OcspRequestBuilder::default().with_request(Request::new(cert_id.clone())).build().to_der().unwrap();
    let nonce = OcspRequestBuilder::default()
        .with_request(Request::new(cert_id))
        .with_extension(Nonce::new(vec![0x42; 32]).unwrap())
        .unwrap()
        .build()
        .to_der()
        .unwrap();
    std::fs::write(out.join("req.der"), &plain).unwrap();
    std::fs::write(out.join("req-nonce.der"), &nonce).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
    let path = format!("/ocsp/{}", b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"));
    std::fs::write(out.join("get-path.txt"), &path).unwrap();
    std::fs::write(out.join("response.der"), &responder.respond(&plain).await.body).unwrap();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    println!("ready {} certificates, {} responses cached", count, responder.cached());
    axum::serve(listener, router(responder)).await.unwrap();
}
