//! Bad input never panics and gets the right OCSP error status or HTTP 4xx: random bytes,
//! every truncation and many bit flips of valid requests, oversized bodies (declared and
//! chunked, over a real socket), bad base64 in GET paths, wrong content types.

#![allow(clippy::unwrap_used)]

mod common;

use common::{cert_id, pki, request, responder, serve};
use ocsp_responder::metrics::Outcome;
use ocsp_responder::{CertIdHash, Settings, router};
use signer_lib::SignatureAlgorithm;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// xorshift64*: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

#[tokio::test]
async fn random_bytes_truncations_and_bit_flips_never_panic() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);

    for _ in 0..2000 {
        let len = usize::try_from(noise.next() % 300).unwrap();
        let mut bytes = noise.bytes(len);
        if len > 0 && noise.next().is_multiple_of(2) {
            bytes[0] = 0x30; // looks like a SEQUENCE
        }
        let answer = r.respond(&bytes).await;
        assert_eq!(answer.outcome, Outcome::MalformedRequest, "{}", hex::encode(&bytes));
    }

    let valid = [
        request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None),
        request(&[cert_id(&p.issuing, &p.leaves[1], CertIdHash::Sha256)], Some(&[7; 32])),
        request(
            &[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1), cert_id(&p.issuing, &p.leaves[3], CertIdHash::Sha1)],
            Some(&[1; 128]),
        ),
    ];
    for der in &valid {
        assert_ne!(r.respond(der).await.outcome, Outcome::MalformedRequest);
        for cut in 0..der.len() {
            let answer = r.respond(&der[..cut]).await;
            assert_eq!(answer.outcome, Outcome::MalformedRequest, "truncated to {cut}");
        }
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(r.respond(&longer).await.outcome, Outcome::MalformedRequest, "trailing data");
        for _ in 0..500 {
            let mut flipped = der.clone();
            let at = usize::try_from(noise.next()).unwrap() % flipped.len();
            flipped[at] ^= 1 << (noise.next() % 8);
            // Any answer will do, as long as there is one.
            let _ = r.respond(&flipped).await;
            let _ = ocsp_responder::request::parse(&flipped);
        }
    }
}

/// Sends raw bytes over a socket and returns the HTTP status line.
async fn raw_http(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the status line and headers are in (the server may close early on 413).
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_mislabelled_bodies_get_http_errors_over_a_socket() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let addr = serve(router(r)).await;

    let declared =
        "POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\nContent-Length: 100000000\r\n\r\n";
    assert_eq!(raw_http(addr, declared.as_bytes()).await, "HTTP/1.1 413 Payload Too Large");

    let mut chunked =
        b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[0x30; 0x1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw_http(addr, &chunked).await, "HTTP/1.1 413 Payload Too Large");

    let der = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    let mut wrong = format!(
        "POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        der.len()
    )
    .into_bytes();
    wrong.extend_from_slice(&der);
    assert_eq!(raw_http(addr, &wrong).await, "HTTP/1.1 415 Unsupported Media Type");

    for path in ["/ocsp/MEIwQDA%", "/ocsp/%ZZ", "/ocsp/====", "/ocsp/@@@", "/MEI%00wQ"] {
        let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let status = raw_http(addr, get.as_bytes()).await;
        assert!(status == "HTTP/1.1 200 OK" || status == "HTTP/1.1 400 Bad Request", "{path}: {status}");
    }
}
