//! Shared by the integration tests: a root → issuing CA → {OCSP signer, leaves} hierarchy
//! issued with `policies::issue` (software keys), a responder over an in-memory source, and
//! request builders.

#![allow(dead_code)] // each test file uses part of this
#![allow(clippy::unwrap_used)] // test helpers

use std::path::Path;
use std::sync::Arc;

use der::asn1::OctetString;
use der::{Decode, Encode};
use ocsp_responder::source::memory::MemorySource;
use ocsp_responder::{CertIdHash, CertificateStatus, Issuer, IssuerId, Responder, Serial, Settings};
use policies::{IssueRequest, IssuerUrls, Profiles, SubjectData, issue, random_serial};
use signer_lib::key::software::SoftwareKey;
use signer_lib::{SignatureAlgorithm, Signer};
use spki::AlgorithmIdentifierOwned;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;
use x509_ocsp::builder::OcspRequestBuilder;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{BasicOcspResponse, CertId, OcspResponse, OcspResponseStatus, Request};

/// One algorithm's hierarchy.
pub struct Pki {
    pub algorithm: SignatureAlgorithm,
    pub id: IssuerId,
    pub root: Certificate,
    pub issuing: Certificate,
    pub issuing_key: Arc<SoftwareKey>,
    pub responder_cert: Certificate,
    pub responder_key: Arc<SoftwareKey>,
    /// End-entity certificates: [0] good, [1] revoked (keyCompromise), [2] on hold,
    /// [3] issued by the CA but never recorded in the source (must be `unknown`).
    pub leaves: Vec<Certificate>,
}

/// Certificates valid from an hour ago (OpenSSL checks them against the real clock).
pub fn not_before() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc() - Duration::hours(1);
    now.replace_nanosecond(0).unwrap()
}

fn subject(profile: &str, n: usize) -> SubjectData {
    let org = "电子口岸示例数据中心".to_owned();
    match profile {
        "root-ca" => SubjectData::Authority { organization: org, common_name: "OCSP Test Root CA".into() },
        "issuing-ca" => SubjectData::Authority { organization: org, common_name: "OCSP Test Issuing CA".into() },
        "ocsp-signer" => SubjectData::Authority { organization: org, common_name: "OCSP Test Responder 1".into() },
        _ => SubjectData::Platform { common_name: format!("platform gateway {n}"), dns_names: vec![] },
    }
}

fn cert(
    profiles: &Profiles,
    profile: &str,
    n: usize,
    issuer: Option<(&Certificate, &dyn Signer)>,
    subject_key: &dyn Signer,
    not_before: OffsetDateTime,
) -> Certificate {
    let profile = profiles.get(profile).unwrap();
    let request = IssueRequest {
        profile,
        subject: subject(&profile.id, n),
        subject_spki_der: subject_key.public_key_der().to_vec(),
        not_before,
        not_after: not_before + Duration::days(30),
        serial: random_serial(),
        urls: IssuerUrls {
            ocsp: Some("http://ocsp.eport.example/".into()),
            ca_issuers: Some("http://pki.eport.example/issuing.cer".into()),
            crl: Some("http://pki.eport.example/issuing.crl".into()),
        },
    };
    match issuer {
        None => issue(None, subject_key, &request, not_before).unwrap(),
        Some((cert, key)) => issue(Some(cert), key, &request, not_before).unwrap(),
    }
}

/// A root, an issuing CA, its OCSP signer and four TLS-client leaves, all of `algorithm`.
pub fn pki(algorithm: SignatureAlgorithm, id: &str) -> Pki {
    let profiles = Profiles::embedded().unwrap();
    let t = not_before();
    let root_key = SoftwareKey::generate(algorithm).unwrap();
    let root = cert(&profiles, "root-ca", 0, None, &root_key, t);
    let issuing_key = Arc::new(SoftwareKey::generate(algorithm).unwrap());
    let issuing = cert(&profiles, "issuing-ca", 0, Some((&root, &root_key)), &*issuing_key, t);
    let responder_key = Arc::new(SoftwareKey::generate(algorithm).unwrap());
    let responder_cert = cert(&profiles, "ocsp-signer", 0, Some((&issuing, &*issuing_key)), &*responder_key, t);
    let leaves = (0..4)
        .map(|n| {
            let key = SoftwareKey::generate(algorithm).unwrap();
            cert(&profiles, "tls-client", n, Some((&issuing, &*issuing_key)), &key, t)
        })
        .collect();
    Pki { algorithm, id: IssuerId::from(id), root, issuing, issuing_key, responder_cert, responder_key, leaves }
}

/// 2024-01-01: when revocations in the source happened.
pub fn revoked_at() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_704_067_200).unwrap()
}

pub fn serial_of(cert: &Certificate) -> Serial {
    Serial::from_der_content(cert.tbs_certificate.serial_number.as_bytes()).unwrap()
}

/// Records leaves 0–2 in `source` (good, revoked for keyCompromise, on hold); leaf 3 is left out.
pub fn record(pki: &Pki, source: &MemorySource) {
    source.set(&pki.id, serial_of(&pki.leaves[0]), CertificateStatus::Good);
    source.set(
        &pki.id,
        serial_of(&pki.leaves[1]),
        CertificateStatus::Revoked { time: revoked_at(), reason: Some(x509_cert::ext::pkix::CrlReason::KeyCompromise) },
    );
    source.set(&pki.id, serial_of(&pki.leaves[2]), CertificateStatus::Hold { time: revoked_at() });
}

pub fn issuer(pki: &Pki) -> Issuer {
    Issuer::new(
        pki.id.clone(),
        pki.issuing.clone(),
        pki.responder_cert.clone(),
        Arc::clone(&pki.responder_key) as Arc<dyn Signer>,
        OffsetDateTime::now_utc(),
    )
    .unwrap()
}

/// A started responder for `pkis` over a fresh memory source holding each one's leaves 0–2.
pub async fn responder(pkis: &[&Pki], settings: Settings) -> (Responder, Arc<MemorySource>) {
    let source = Arc::new(MemorySource::new());
    for pki in pkis {
        record(pki, &source);
    }
    let responder =
        Responder::new(pkis.iter().map(|p| issuer(p)).collect(), Arc::clone(&source) as _, settings).unwrap();
    responder.start().await.unwrap();
    (responder, source)
}

/// The CertID of `cert` under `hash`, computed here (independently of the responder).
pub fn cert_id(issuer: &Certificate, cert: &Certificate, hash: CertIdHash) -> CertId {
    let name = issuer.tbs_certificate.subject.to_der().unwrap();
    let key = issuer.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    CertId {
        hash_algorithm: AlgorithmIdentifierOwned { oid: hash.oid(), parameters: Some(der::asn1::Null.into()) },
        issuer_name_hash: OctetString::new(hash.digest(&name)).unwrap(),
        issuer_key_hash: OctetString::new(hash.digest(key)).unwrap(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    }
}

/// A DER OCSPRequest for `ids`, with a nonce of `nonce` octets if given.
pub fn request(ids: &[CertId], nonce: Option<&[u8]>) -> Vec<u8> {
    let mut builder = OcspRequestBuilder::default();
    for id in ids {
        builder = builder.with_request(Request::new(id.clone()));
    }
    if let Some(nonce) = nonce {
        builder = builder.with_extension(Nonce::new(nonce.to_vec()).unwrap()).unwrap();
    }
    builder.build().to_der().unwrap()
}

/// Decodes a successful response's BasicOCSPResponse; panics on an error status.
pub fn basic(der: &[u8]) -> BasicOcspResponse {
    let response = OcspResponse::from_der(der).unwrap();
    assert_eq!(response.response_status, OcspResponseStatus::Successful);
    BasicOcspResponse::from_der(response.response_bytes.unwrap().response.as_bytes()).unwrap()
}

pub fn status_of(der: &[u8]) -> OcspResponseStatus {
    OcspResponse::from_der(der).unwrap().response_status
}

/// Checks the response's signature with signer-lib's verifier, under the included responder
/// certificate, which must be `responder`.
pub fn verify(basic: &BasicOcspResponse, responder: &Certificate) {
    let certs = basic.certs.as_ref().expect("responder certificate included");
    assert_eq!(&certs[0], responder);
    let spki = responder.tbs_certificate.subject_public_key_info.to_der().unwrap();
    let tbs = basic.tbs_response_data.to_der().unwrap();
    signer_lib::verify::verify_signature(
        &spki,
        basic.signature_algorithm.oid,
        &tbs,
        basic.signature.as_bytes().unwrap(),
    )
    .unwrap();
}

pub fn write_pem(dir: &Path, name: &str, cert: &Certificate) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, signer_lib::certificate::to_pem(cert).unwrap()).unwrap();
    path
}

/// Serves `router` on 127.0.0.1, port chosen by the system; returns the address.
pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A plain HTTP/1.1 exchange over a fresh connection (`Connection: close`): the status code,
/// the header block (lower-cased) and the body. Enough for tests, so that they need no curl.
pub async fn fetch(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete HTTP response") + 4;
    let headers = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, headers, response[split..].to_vec())
}
