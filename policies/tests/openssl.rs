//! Interop: certificates issued from every profile are checked by tools we did not write.
//!
//! - OpenSSL 3.0 (`/usr/bin/openssl`, or `$OPENSSL`): `openssl verify -x509_strict` of the
//!   whole chain, with the purpose each profile is for (sslserver, sslclient, timestampsign,
//!   smimesign), and `openssl x509 -text` showing the intended extensions.
//!
//!   SM2: the certificates are signed under the GM/T 0009 default distinguishing ID
//!   "1234567812345678". OpenSSL 3.0 verifies SM2 with an *empty* ID unless told otherwise,
//!   and `-vfyopt distid:…` applies only to the certificate being verified, not to the chain
//!   above it (a three-level chain fails at depth 1 with "certificate signature failure" even
//!   with the option). So each SM2 link is verified on its own: the issuing CA against the
//!   root, and each end entity against the issuing CA with `-partial_chain`. The root's
//!   self-signature (`-check_ss_sig` ignores `-vfyopt`) is verified with signer-lib in
//!   `tests/chains.rs`. Without `-vfyopt` OpenSSL 3.0 refuses the signatures, which the test
//!   checks too, so a change of default is noticed.
//!
//! - pkilint (Python, `lint_pkix_cert` and `lint_pkix_signer_signee_cert_chain`), when it is
//!   installed: no finding at NOTICE or above on any P-256 certificate or issuer/subject pair.
//!   On SM2 certificates pkilint 0.13.3 reports no error or warning; it cannot check SM2
//!   signatures and says so in two NOTICEs:
//!   `pkix.aki_absent_self_issued_and_unsupported_algorithm` on the SM2 root ("Self-issued CA
//!   certificate uses unsupported public key algorithm: 1.2.840.10045.2.1": it cannot prove
//!   the root self-signed, which is what allows a root without authorityKeyIdentifier), and
//!   `pkix.unsupported_algorithm` from the issuer/subject linter on every SM2 signature. Both
//!   are accepted below and nothing else is. (At INFO it also reports
//!   `pkix.subject_key_identifier_rfc7093_method_1_identified` for every certificate: it
//!   recognises our key identifier method.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use signer_lib::SignatureAlgorithm;

/// The GM/T 0009 default SM2 distinguishing ID, which our SM2 keys sign with.
const DISTID_OPT: &str = "distid:1234567812345678";

fn openssl_binary() -> String {
    std::env::var("OPENSSL").unwrap_or_else(|_| "/usr/bin/openssl".into())
}

/// Runs a program; returns (success, stdout + stderr).
fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    run(&openssl_binary(), args, dir)
}

/// `-attime`: an hour after issuance (the test certificates start at a fixed future date).
fn at_time() -> String {
    (common::now().unix_timestamp() + 3600).to_string()
}

/// The chain of `algorithm` written as PEM files: root.pem, issuing.pem, <profile>.pem.
fn write_chain(algorithm: SignatureAlgorithm) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let chain = common::chain(algorithm);
    std::fs::write(dir.path().join("root.pem"), common::pem(&chain.root)).unwrap();
    std::fs::write(dir.path().join("issuing.pem"), common::pem(&chain.issuing)).unwrap();
    let mut ids = Vec::new();
    for (id, cert) in &chain.leaves {
        std::fs::write(dir.path().join(format!("{id}.pem")), common::pem(cert)).unwrap();
        ids.push(id.clone());
    }
    (dir, ids)
}

/// The OpenSSL purpose each end-entity profile is for.
fn purpose(profile: &str) -> &'static str {
    match profile {
        "tls-server" => "sslserver",
        "tls-client" | "officer" => "sslclient",
        "tsa" => "timestampsign",
        // CMS signatures must pass `openssl cms -verify`'s default S/MIME signing purpose.
        "enterprise-legal-rep" | "enterprise-operator" | "agency" => "smimesign",
        _ => "any",
    }
}

#[test]
fn openssl_verifies_every_p256_chain_with_the_profiles_purpose() {
    let (dir, ids) = write_chain(SignatureAlgorithm::EcdsaP256Sha256);
    let at = at_time();
    assert_eq!(ids.len(), 8);
    for id in &ids {
        let leaf = format!("{id}.pem");
        let (ok, out) = openssl(
            &[
                "verify",
                "-x509_strict",
                "-attime",
                &at,
                "-purpose",
                purpose(id),
                "-CAfile",
                "root.pem",
                "-untrusted",
                "issuing.pem",
                &leaf,
            ],
            dir.path(),
        );
        assert!(ok && out.contains(&format!("{leaf}: OK")), "{id}: {out}");
    }
    let (ok, out) = openssl(
        &["verify", "-x509_strict", "-check_ss_sig", "-attime", &at, "-CAfile", "root.pem", "root.pem"],
        dir.path(),
    );
    assert!(ok, "root self-signature: {out}");
}

#[test]
fn openssl_refuses_a_p256_leaf_for_the_wrong_purpose() {
    let (dir, _) = write_chain(SignatureAlgorithm::EcdsaP256Sha256);
    let at = at_time();
    let args = ["verify", "-attime", &at, "-CAfile", "root.pem", "-untrusted", "issuing.pem"];
    let (ok, out) = openssl(&[&args[..], &["-purpose", "sslserver", "tls-client.pem"]].concat(), dir.path());
    assert!(!ok, "a client certificate passed as a server: {out}");
    let (ok, out) = openssl(&[&args[..], &["-purpose", "timestampsign", "officer.pem"]].concat(), dir.path());
    assert!(!ok, "an officer certificate passed as a TSA: {out}");
}

#[test]
fn openssl_verifies_every_sm2_link_with_the_default_distinguishing_id() {
    let (dir, ids) = write_chain(SignatureAlgorithm::Sm2Sm3);
    let at = at_time();
    let (ok, out) = openssl(
        &["verify", "-x509_strict", "-vfyopt", DISTID_OPT, "-attime", &at, "-CAfile", "root.pem", "issuing.pem"],
        dir.path(),
    );
    assert!(ok && out.contains("issuing.pem: OK"), "issuing CA: {out}");
    assert_eq!(ids.len(), 8);
    for id in &ids {
        let leaf = format!("{id}.pem");
        let (ok, out) = openssl(
            &[
                "verify",
                "-x509_strict",
                "-partial_chain",
                "-vfyopt",
                DISTID_OPT,
                "-attime",
                &at,
                "-purpose",
                purpose(id),
                "-CAfile",
                "issuing.pem",
                &leaf,
            ],
            dir.path(),
        );
        assert!(ok && out.contains(&format!("{leaf}: OK")), "{id}: {out}");
    }
    // OpenSSL 3.0's default SM2 ID is empty: without the option the signature must fail.
    let (ok, out) = openssl(&["verify", "-attime", &at, "-CAfile", "root.pem", "issuing.pem"], dir.path());
    assert!(!ok && out.contains("signature failure"), "verified without the distinguishing ID: {out}");
}

/// What `openssl x509 -text` must show for each profile.
fn expected_text(profile: &str) -> &'static [&'static str] {
    match profile {
        "root-ca" => &[
            "X509v3 Basic Constraints: critical",
            "CA:TRUE",
            "X509v3 Key Usage: critical",
            "Certificate Sign, CRL Sign",
        ],
        "issuing-ca" => &[
            "CA:TRUE, pathlen:0",
            "Certificate Sign, CRL Sign",
            "X509v3 Authority Key Identifier",
            "X509v3 Any Policy",
            "CA Issuers - URI:http://pki.eport.example/issuing.cer",
            "URI:http://pki.eport.example/issuing.crl",
        ],
        "enterprise-legal-rep" | "enterprise-operator" => &[
            "X509v3 Key Usage: critical",
            "Digital Signature, Non Repudiation",
            "1.3.6.1.5.5.7.3.36, E-mail Protection, TLS Web Client Authentication",
            "CA:FALSE",
            "organizationIdentifier = NTRCN-91350100M000100Y43",
            "1.2.156.10260.4.4",
            "91350100M000100Y43",
            "OCSP - URI:http://ocsp.eport.example/",
        ],
        "agency" => {
            &["Digital Signature, Non Repudiation", "serialNumber = CUSTOMS-3501", "Policy: 1.3.6.1.4.1.32473.1.3"]
        }
        "tls-server" => &[
            "TLS Web Server Authentication",
            "DNS:swapi.eport.example, DNS:swapi2.eport.example",
            "CN = swapi.eport.example",
        ],
        "tls-client" => &["TLS Web Client Authentication", "CN = CIQ platform gateway"],
        "officer" => &["TLS Web Client Authentication", "title = security-officer", "Policy: 1.3.6.1.4.1.32473.1.6"],
        "ocsp-signer" => {
            &["OCSP No Check", "OCSP Signing", "X509v3 Key Usage: critical\n                Digital Signature"]
        }
        "tsa" => &["X509v3 Extended Key Usage: critical\n                Time Stamping\n"],
        _ => &[],
    }
}

/// What `openssl x509 -text` must not show for each profile.
fn unexpected_text(profile: &str) -> &'static [&'static str] {
    match profile {
        "root-ca" => &["Authority Key Identifier", "Authority Information Access", "CRL Distribution Points"],
        "issuing-ca" => &["Extended Key Usage", "OCSP No Check", "pathlen:1"],
        "ocsp-signer" => &["Authority Information Access", "CRL Distribution Points"],
        "tsa" => &["TLS Web", "OCSP Signing"],
        _ => &["CA:TRUE", "Certificate Sign"],
    }
}

fn check_text(algorithm: SignatureAlgorithm, signature: &str, curve: &str) {
    let (dir, mut ids) = write_chain(algorithm);
    ids.extend(["root-ca".to_owned(), "issuing-ca".to_owned()]);
    for id in &ids {
        let file = match id.as_str() {
            "root-ca" => "root.pem".to_owned(),
            "issuing-ca" => "issuing.pem".to_owned(),
            other => format!("{other}.pem"),
        };
        let (ok, text) = openssl(&["x509", "-in", &file, "-noout", "-text"], dir.path());
        assert!(ok, "{id}: {text}");
        assert!(text.contains(&format!("Signature Algorithm: {signature}")), "{id}: {text}");
        assert!(text.contains(&format!("ASN1 OID: {curve}")), "{id}: {text}");
        assert!(text.contains("X509v3 Subject Key Identifier"), "{id}: {text}");
        for s in expected_text(id) {
            assert!(text.contains(s), "{id}: expected {s:?} in\n{text}");
        }
        for s in unexpected_text(id) {
            assert!(!text.contains(s), "{id}: unexpected {s:?} in\n{text}");
        }
    }
}

#[test]
fn openssl_shows_the_profile_extensions_of_p256_certificates() {
    check_text(SignatureAlgorithm::EcdsaP256Sha256, "ecdsa-with-SHA256", "prime256v1");
}

#[test]
fn openssl_shows_the_profile_extensions_of_sm2_certificates() {
    check_text(SignatureAlgorithm::Sm2Sm3, "SM2-with-SM3", "SM2");
}

// --- pkilint

/// The pkilint console scripts, next to the `python3` that can import pkilint; `None`
/// (and the pkilint tests pass vacuously, saying so) when it is not installed.
fn pkilint() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import pkilint, shutil; print(shutil.which('lint_pkix_cert') or '')"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || path.is_empty() {
        eprintln!("pkilint is not installed (pip install pkilint): pkilint checks skipped");
        return None;
    }
    Some(PathBuf::from(path))
}

/// (severity, code) of every pkilint finding at NOTICE or above.
fn pkilint_findings(script: &Path, args: &[&str], dir: &Path) -> Vec<(String, String)> {
    let program = script.to_string_lossy();
    let (_, out) = run(&program, &[&["lint", "-s", "NOTICE", "-f", "CSV"], args].concat(), dir);
    out.lines()
        .skip_while(|l| !l.starts_with("node_path,"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols.get(2).unwrap_or(&"?").to_string(), cols.get(3).unwrap_or(&"?").to_string())
        })
        .collect()
}

fn chain_linter(cert_linter: &Path) -> PathBuf {
    cert_linter.with_file_name("lint_pkix_signer_signee_cert_chain")
}

#[test]
fn pkilint_finds_nothing_in_p256_certificates() {
    let Some(linter) = pkilint() else { return };
    let (dir, ids) = write_chain(SignatureAlgorithm::EcdsaP256Sha256);
    let files: Vec<String> = ["root.pem".to_owned(), "issuing.pem".to_owned()]
        .into_iter()
        .chain(ids.iter().map(|i| format!("{i}.pem")))
        .collect();
    for file in &files {
        let findings = pkilint_findings(&linter, &[file], dir.path());
        assert!(findings.is_empty(), "{file}: {findings:?}");
    }
    let chain = chain_linter(&linter);
    let mut pairs = vec![("root.pem".to_owned(), "issuing.pem".to_owned())];
    pairs.extend(ids.iter().map(|i| ("issuing.pem".to_owned(), format!("{i}.pem"))));
    for (issuer, subject) in &pairs {
        let findings = pkilint_findings(&chain, &[issuer, subject], dir.path());
        assert!(findings.is_empty(), "{issuer} → {subject}: {findings:?}");
    }
}

#[test]
fn pkilint_reports_only_unsupported_algorithm_notices_on_sm2_certificates() {
    let Some(linter) = pkilint() else { return };
    let (dir, ids) = write_chain(SignatureAlgorithm::Sm2Sm3);
    let accepted = ["pkix.aki_absent_self_issued_and_unsupported_algorithm", "pkix.unsupported_algorithm"];
    let files: Vec<String> = ["root.pem".to_owned(), "issuing.pem".to_owned()]
        .into_iter()
        .chain(ids.iter().map(|i| format!("{i}.pem")))
        .collect();
    let mut all = Vec::new();
    for file in &files {
        all.extend(pkilint_findings(&linter, &[file], dir.path()).into_iter().map(|f| (file.clone(), f)));
    }
    let chain = chain_linter(&linter);
    for id in &ids {
        let subject = format!("{id}.pem");
        all.extend(
            pkilint_findings(&chain, &["issuing.pem", &subject], dir.path()).into_iter().map(|f| (subject.clone(), f)),
        );
    }
    for (file, (severity, code)) in &all {
        assert!(severity == "NOTICE" && accepted.contains(&code.as_str()), "{file}: {severity} {code}");
    }
    // The root's NOTICE is expected: pkilint cannot verify an SM2 self-signature.
    assert!(all.iter().any(|(f, (_, c))| f == "root.pem" && c == accepted[0]), "{all:?}");
}
