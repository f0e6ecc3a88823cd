//! Interop with tools we did not write: `openssl ocsp` as the client (POST, with and without
//! nonce, SHA-1 and SHA-256 CertIDs, several certificates), GET (and curl's GET where curl is
//! installed) verified with `openssl ocsp -respin`, and pkilint's OCSP response linter.
//!
//! The responder runs in-process on 127.0.0.1 (port chosen by the system) over the in-memory
//! source; the hierarchy is P-256 root → issuing CA → OCSP signer + leaves.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use common::{fetch, pki, responder, serve, write_pem};
use ocsp_responder::{Settings, router};
use signer_lib::SignatureAlgorithm;

struct Files {
    _dir: tempfile::TempDir,
    path: PathBuf,
    root: PathBuf,
    issuing: PathBuf,
    leaves: Vec<PathBuf>,
}

fn files(p: &common::Pki) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    Files {
        root: write_pem(&path, "root.pem", &p.root),
        issuing: write_pem(&path, "issuing.pem", &p.issuing),
        leaves: p.leaves.iter().enumerate().map(|(i, l)| write_pem(&path, &format!("leaf{i}.pem"), l)).collect(),
        path,
        _dir: dir,
    }
}

async fn run(program: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(program).args(args).output().await.unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ocsp_reports_good_revoked_and_unknown_over_post() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let f = files(&p);
    let (r, _) = responder(&[&p], Settings::default()).await;
    let addr = serve(router(r)).await;
    let url = format!("http://{addr}/ocsp");
    let expected = [
        (0, "good", None),
        (1, "revoked", Some("Reason: keyCompromise")),
        (2, "revoked", Some("Reason: certificateHold")),
        (3, "unknown", None),
    ];
    for nonce in [true, false] {
        for hash in ["-sha1", "-sha256"] {
            for (leaf, status, reason) in expected {
                // The digest option must come before -cert.
                let mut args = vec![
                    "ocsp",
                    "-issuer",
                    s(&f.issuing),
                    hash,
                    "-cert",
                    s(&f.leaves[leaf]),
                    "-url",
                    &url,
                    "-CAfile",
                    s(&f.root),
                ];
                if !nonce {
                    args.push("-no_nonce");
                }
                let out = run("openssl", &args).await;
                let all = text(&out);
                assert!(out.status.success(), "{args:?}\n{all}");
                assert!(all.contains("Response verify OK"), "{args:?}\n{all}");
                let line = format!("leaf{leaf}.pem: {status}");
                assert!(all.contains(&line), "expected {line:?} for {args:?}\n{all}");
                if let Some(reason) = reason {
                    assert!(all.contains(reason), "expected {reason:?}\n{all}");
                }
                assert!(!all.contains("WARNING"), "{args:?}\n{all}");
                assert!(!all.contains(": good") || leaf == 0, "never good for leaf {leaf}\n{all}");
            }
        }
    }

    // Several certificates in one request (one issuer): one response, each status right.
    let out = run(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            s(&f.issuing),
            "-cert",
            s(&f.leaves[0]),
            "-cert",
            s(&f.leaves[1]),
            "-cert",
            s(&f.leaves[3]),
            "-url",
            &url,
            "-CAfile",
            s(&f.root),
        ],
    )
    .await;
    let all = text(&out);
    assert!(all.contains("Response verify OK"), "{all}");
    assert!(
        all.contains("leaf0.pem: good") && all.contains("leaf1.pem: revoked") && all.contains("leaf3.pem: unknown"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_fetch_identical_responses_that_openssl_verifies() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let f = files(&p);
    let (r, _) = responder(&[&p], Settings::default()).await;
    let addr = serve(router(r)).await;
    for leaf in [0, 1, 3] {
        let req = f.path.join(format!("req{leaf}.der"));
        let out = run(
            "openssl",
            &["ocsp", "-issuer", s(&f.issuing), "-cert", s(&f.leaves[leaf]), "-reqout", s(&req), "-no_nonce"],
        )
        .await;
        assert!(out.status.success(), "{}", text(&out));
        let der = std::fs::read(&req).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let encoded = b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        let got = f.path.join(format!("get{leaf}.der"));
        let (status, headers, get_body) = fetch(addr, "GET", &format!("/ocsp/{encoded}"), None, &[]).await;
        assert_eq!(status, 200);
        let (status, _, post_body) = fetch(addr, "POST", "/ocsp", Some("application/ocsp-request"), &der).await;
        assert_eq!(status, 200);
        assert_eq!(get_body, post_body, "GET and POST differ");
        std::fs::write(&got, &get_body).unwrap();
        for name in [
            "content-type: application/ocsp-response",
            "last-modified:",
            "expires:",
            "etag:",
            "cache-control: max-age=",
        ] {
            assert!(headers.contains(name), "missing {name}\n{headers}");
        }
        // curl, where installed, fetches the same bytes over GET.
        if std::process::Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success()) {
            let curled = f.path.join(format!("curl{leaf}.der"));
            let url = format!("http://{addr}/ocsp/{encoded}");
            let out = run("curl", &["-sS", "--fail", "-o", s(&curled), &url]).await;
            assert!(out.status.success(), "{}", text(&out));
            assert_eq!(std::fs::read(&curled).unwrap(), get_body, "curl GET differs");
        }

        let out = run(
            "openssl",
            &["ocsp", "-respin", s(&got), "-issuer", s(&f.issuing), "-CAfile", s(&f.root), "-resp_text"],
        )
        .await;
        let all = text(&out);
        assert!(out.status.success() && all.contains("Response verify OK"), "{all}");
        assert!(all.contains("Responder Id: ") && all.contains("Next Update:"), "{all}");
        let expected = ["Cert Status: good", "Cert Status: revoked", "", "Cert Status: unknown"][leaf];
        assert!(all.contains(expected), "{all}");
    }
}

#[tokio::test]
async fn pkilint_finds_no_errors_in_our_responses() {
    let available =
        std::process::Command::new("python3").args(["-c", "import pkilint"]).output().is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("SKIPPED: Python pkilint is not installed (pip install pkilint)");
        return;
    }
    for algorithm in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::Sm2Sm3] {
        let p = pki(algorithm, "ca");
        let (r, _) = responder(&[&p], Settings::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "good",
                common::request(&[common::cert_id(&p.issuing, &p.leaves[0], ocsp_responder::CertIdHash::Sha1)], None),
            ),
            (
                "revoked",
                common::request(&[common::cert_id(&p.issuing, &p.leaves[1], ocsp_responder::CertIdHash::Sha256)], None),
            ),
            (
                "unknown",
                common::request(&[common::cert_id(&p.issuing, &p.leaves[3], ocsp_responder::CertIdHash::Sha1)], None),
            ),
            (
                "nonce",
                common::request(
                    &[common::cert_id(&p.issuing, &p.leaves[0], ocsp_responder::CertIdHash::Sha1)],
                    Some(&[0x5a; 32]),
                ),
            ),
        ];
        for (name, req) in cases {
            let answer = r.respond(&req).await;
            let path = dir.path().join(format!("{name}.der"));
            std::fs::write(&path, &answer.body).unwrap();
            let out = run("lint_ocsp_response", &["lint", "-s", "WARNING", "--document-format", "DER", s(&path)]).await;
            let all = text(&out);
            eprintln!("pkilint {algorithm} {name}: {}", if all.trim().is_empty() { "no findings" } else { all.trim() });
            assert!(!all.contains("ERROR") && !all.contains("FATAL"), "pkilint on {algorithm} {name}:\n{all}");
        }
    }
}
