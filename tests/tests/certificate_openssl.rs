//! Certificates made by `signer_lib::certificate` are accepted by `openssl verify`.
//!
//! SM2: OpenSSL 3.0 checks SM2 certificate signatures under the distinguishing ID given with
//! `-vfyopt distid:...` (empty otherwise); ours are signed under the GM/T 0009 default
//! `1234567812345678`, so the option is pinned explicitly (R32; the default changes in 4.0).

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use signer_lib::key::software::SoftwareKey;
use signer_lib::{SignatureAlgorithm, Signer, certificate};
use x509_cert::Certificate;

const OPENSSL: &str = "/usr/bin/openssl";
const DAY: Duration = Duration::from_secs(86_400);

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL}: {e}; install OpenSSL 3 (apt-get install openssl)"))
}

fn write_pem(dir: &Path, name: &str, cert: &Certificate) {
    std::fs::write(dir.join(name), certificate::to_pem(cert).unwrap()).unwrap();
}

struct Chain {
    root: Certificate,
    inter: Certificate,
    leaf: Certificate,
}

fn chain(alg: SignatureAlgorithm) -> Chain {
    let root_key = SoftwareKey::generate(alg).unwrap();
    let inter_key = SoftwareKey::generate(alg).unwrap();
    let leaf_key = SoftwareKey::generate(alg).unwrap();
    let root = certificate::self_signed_ca(&root_key, "CN=Interop Root,O=eport-pki tests,C=CN", 30 * DAY).unwrap();
    let inter = certificate::issue_intermediate(
        &root_key,
        &root,
        "CN=Interop Issuing CA,O=eport-pki tests,C=CN",
        inter_key.public_key_der(),
        20 * DAY,
        Some(0),
    )
    .unwrap();
    let leaf = certificate::issue_end_entity(
        &inter_key,
        &inter,
        "CN=Zhang San,O=Example Trading,C=CN",
        leaf_key.public_key_der(),
        10 * DAY,
    )
    .unwrap();
    Chain { root, inter, leaf }
}

/// Runs `openssl verify [extra] -CAfile root.pem -untrusted inter.pem leaf.pem`.
fn verify_chain(c: &Chain, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    write_pem(dir.path(), "root.pem", &c.root);
    write_pem(dir.path(), "inter.pem", &c.inter);
    write_pem(dir.path(), "leaf.pem", &c.leaf);
    let mut args = vec!["verify"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-CAfile", "root.pem", "-untrusted", "inter.pem", "leaf.pem"]);
    openssl(dir.path(), &args)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("leaf.pem: OK"),
        "{what}: openssl verify failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openssl_verifies_p256_and_ed25519_chains() {
    for alg in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::Ed25519] {
        let c = chain(alg);
        assert_ok(&verify_chain(&c, &[]), alg.name());
        // The root's own signature too.
        assert_ok(&verify_chain(&c, &["-check_ss_sig"]), alg.name());
    }
}

/// OpenSSL 3.0's `verify` applies `-vfyopt distid:` only to the target certificate: in a
/// three-level chain the intermediate's signature is then checked under the empty ID and
/// fails ("error 7 at 1 depth lookup: certificate signature failure"). So each link is checked
/// on its own (`-partial_chain` trusts the intermediate), and the whole chain with our verifier.
#[test]
fn openssl_verifies_each_link_of_an_sm2_chain_with_the_default_distinguishing_id() {
    let c = chain(SignatureAlgorithm::Sm2Sm3);
    let dir = tempfile::tempdir().unwrap();
    write_pem(dir.path(), "root.pem", &c.root);
    write_pem(dir.path(), "inter.pem", &c.inter);
    write_pem(dir.path(), "leaf.pem", &c.leaf);
    let distid = ["-vfyopt", "distid:1234567812345678"];

    let out = openssl(dir.path(), &[&["verify"][..], &distid, &["-CAfile", "root.pem", "inter.pem"]].concat());
    assert!(out.status.success(), "root → intermediate: {}", String::from_utf8_lossy(&out.stderr));
    let leaf_link = [&["verify"][..], &distid, &["-partial_chain", "-CAfile", "inter.pem", "leaf.pem"]].concat();
    let out = openssl(dir.path(), &leaf_link);
    assert_ok(&out, "intermediate → leaf");

    // Under OpenSSL 3.0's empty default ID the signature does not verify: proof that the
    // option above is what made the difference.
    let out = openssl(dir.path(), &["verify", "-partial_chain", "-CAfile", "inter.pem", "leaf.pem"]);
    assert!(!out.status.success(), "SM2 verified without distid: {}", String::from_utf8_lossy(&out.stdout));

    // And our own verifier checks every link, the root's self-signature included.
    for (cert, issuer) in [(&c.root, &c.root), (&c.inter, &c.root), (&c.leaf, &c.inter)] {
        use der::Encode;
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let spki = issuer.tbs_certificate.subject_public_key_info.to_der().unwrap();
        signer_lib::verify::verify_signature(&spki, cert.signature_algorithm.oid, &tbs, cert.signature.raw_bytes())
            .unwrap();
    }
}

#[test]
fn openssl_refuses_a_leaf_under_another_root() {
    let a = chain(SignatureAlgorithm::EcdsaP256Sha256);
    let b = chain(SignatureAlgorithm::EcdsaP256Sha256);
    let mixed = Chain { root: b.root, inter: a.inter, leaf: a.leaf };
    assert!(!verify_chain(&mixed, &[]).status.success());
}

#[test]
fn openssl_reads_the_profiles() {
    let c = chain(SignatureAlgorithm::EcdsaP256Sha256);
    let dir = tempfile::tempdir().unwrap();
    write_pem(dir.path(), "leaf.pem", &c.leaf);
    write_pem(dir.path(), "inter.pem", &c.inter);
    let text = |name: &str| {
        let out = openssl(dir.path(), &["x509", "-noout", "-text", "-in", name]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let leaf = text("leaf.pem");
    assert!(leaf.contains("CA:FALSE"), "{leaf}");
    assert!(leaf.contains("Digital Signature, Non Repudiation"), "{leaf}");
    let inter = text("inter.pem");
    assert!(inter.contains("CA:TRUE, pathlen:0"), "{inter}");
    assert!(inter.contains("Certificate Sign, CRL Sign"), "{inter}");
    // openssl's DER parses back to the same certificate.
    let out = openssl(dir.path(), &["x509", "-in", "leaf.pem", "-outform", "DER"]);
    assert_eq!(certificate::parse(&out.stdout).unwrap(), c.leaf);
}
