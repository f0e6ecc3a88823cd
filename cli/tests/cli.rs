#![allow(clippy::unwrap_used)] // test helpers may panic on impossible failures
//! The `eport` binary end to end: keys, CSRs, certificates, signing and verification, and the
//! one-line errors and exit codes of bad input.

use std::path::Path;
use std::process::{Command, Output};

const PASS_VAR: &str = "EPORT_TEST_PASSPHRASE";

fn eport(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eport"))
        .args(args)
        .current_dir(dir)
        .env(PASS_VAR, "test passphrase")
        .env_remove("EPORT_PKCS11_MODULE")
        .output()
        .expect("run eport")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = eport(dir, args);
    assert!(out.status.success(), "eport {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail and returns its stderr, which must be one line.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = eport(dir, args);
    assert!(!out.status.success(), "eport {args:?} should have failed");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "expected one line on stderr, got {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl")
}

fn make_signer(dir: &Path, alg: &str) {
    let key = format!("{alg}.key");
    ok(dir, &["key", "generate", "--algorithm", alg, "--key", &key, "--passphrase-env", PASS_VAR]);
    ok(
        dir,
        &[
            "cert",
            "self-sign",
            "--key",
            &key,
            "--passphrase-env",
            PASS_VAR,
            "--subject",
            "CN=Zhang San,O=Example Trading Co,C=CN",
            "--days",
            "30",
            "--out",
            &format!("{alg}.crt"),
        ],
    );
}

#[test]
fn signs_and_verifies_with_every_algorithm_detached_and_attached() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("msg.xml"), b"<Declaration>1200.00</Declaration>").unwrap();
    for alg in ["p256", "sm2", "ed25519"] {
        make_signer(d, alg);
        let (key, cert) = (format!("{alg}.key"), format!("{alg}.crt"));
        let det = format!("{alg}-detached.p7s");
        let att = format!("{alg}-attached.p7s");
        let base = ["sign", "--key", &key, "--passphrase-env", PASS_VAR, "--cert", &cert, "--in", "msg.xml"];
        ok(d, &[&base[..], &["--out", &det]].concat());
        ok(d, &[&base[..], &["--out", &att, "--attached", "--pem"]].concat());

        let report = ok(d, &["verify", "--in", "msg.xml", "--sig", &det]);
        assert!(report.starts_with("valid:"), "{report}");
        assert!(report.contains("CN=Zhang San"), "{report}");
        let json = ok(d, &["verify", "--sig", &att, "--json", "--out", &format!("{alg}.content")]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["signers"][0]["signing_certificate_bound"], true);
        assert_eq!(std::fs::read(d.join(format!("{alg}.content"))).unwrap(), b"<Declaration>1200.00</Declaration>");

        std::fs::write(d.join("tampered.xml"), b"<Declaration>9200.00</Declaration>").unwrap();
        let err = fails(d, &["verify", "--in", "tampered.xml", "--sig", &det]);
        assert!(err.contains("INVALID"), "{err}");
    }
}

#[test]
fn openssl_accepts_our_csr_and_p256_signature() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_signer(d, "p256");
    ok(
        d,
        &["csr", "--key", "p256.key", "--passphrase-env", PASS_VAR, "--subject", "CN=Li Si,C=CN", "--out", "p256.csr"],
    );
    let out = openssl(&["req", "-verify", "-noout", "-in", "p256.csr"], d);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    std::fs::write(d.join("msg.bin"), [0u8, 1, 2, 255, 13, 10]).unwrap();
    ok(
        d,
        &[
            "sign",
            "--key",
            "p256.key",
            "--passphrase-env",
            PASS_VAR,
            "--cert",
            "p256.crt",
            "--in",
            "msg.bin",
            "--out",
            "s.p7s",
        ],
    );
    let out = openssl(
        &[
            "cms",
            "-verify",
            "-binary",
            "-noverify",
            "-inform",
            "DER",
            "-content",
            "msg.bin",
            "-in",
            "s.p7s",
            "-out",
            "/dev/null",
        ],
        d,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn prints_the_public_key_as_pem_that_openssl_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_signer(d, "p256");
    let pem = ok(d, &["key", "public", "--key", "p256.key", "--passphrase-env", PASS_VAR]);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    std::fs::write(d.join("pub.pem"), &pem).unwrap();
    let out = openssl(&["pkey", "-pubin", "-in", "pub.pem", "-noout"], d);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn loads_keys_made_by_openssl_genpkey() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&str, &[&str]); 3] = [
        ("ec.pem", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.pem"]),
        ("ed.pem", &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]),
        ("sm2.pem", &["genpkey", "-algorithm", "SM2", "-out", "sm2.pem"]),
    ];
    for (file, args) in cases {
        let out = openssl(args, d);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ok(d, &["key", "public", "--key", file]);
    }
    // Encrypted with PBES2 (PBKDF2 + AES-256-CBC), as OpenSSL writes it.
    let out = openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
            "-pass",
            "pass:test passphrase",
            "-out",
            "enc.pem",
        ],
        d,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(d, &["key", "public", "--key", "enc.pem", "--passphrase-env", PASS_VAR]);
}

#[test]
fn openssl_reads_our_encrypted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["key", "generate", "--algorithm", "p256", "--key", "k.pem", "--passphrase-env", PASS_VAR]);
    let out = openssl(&["pkey", "-in", "k.pem", "-passin", "pass:test passphrase", "-noout"], d);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_input_gives_one_clear_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_signer(d, "p256");
    std::fs::write(d.join("msg"), b"m").unwrap();

    let e = fails(d, &["key", "public", "--key", "p256.key", "--passphrase-env", "EPORT_TEST_NO_SUCH_VAR"]);
    assert!(e.contains("EPORT_TEST_NO_SUCH_VAR"), "{e}");
    let e = fails(d, &["key", "public", "--key", "p256.key"]);
    assert!(e.contains("encrypted"), "{e}");
    std::fs::write(d.join("wrong-pass"), b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eport"))
        .args(["key", "public", "--key", "p256.key", "--passphrase-env", "WRONG"])
        .current_dir(d)
        .env("WRONG", "not the passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));

    let e = fails(d, &["key", "public", "--key", "missing.key"]);
    assert!(e.contains("missing.key"), "{e}");
    std::fs::write(d.join("garbage.p7s"), b"\x30\x80garbage").unwrap();
    let e = fails(d, &["verify", "--in", "msg", "--sig", "garbage.p7s"]);
    assert!(e.contains("INVALID"), "{e}");
    let e = fails(d, &["verify", "--sig", "missing.p7s"]);
    assert!(e.contains("missing.p7s"), "{e}");
    let e = fails(d, &["key", "public", "--key", "pkcs11:token=nope;object=k"]);
    assert!(e.contains("--module"), "{e}");
    let e = fails(d, &["key", "public", "--key", "pkcs11:token=nope;object=k", "--module", "/nonexistent/libp11.so"]);
    assert!(e.contains("/nonexistent/libp11.so"), "{e}");

    // A key that does not belong to the certificate is refused before anything is signed.
    ok(d, &["key", "generate", "--algorithm", "p256", "--key", "other.key"]);
    let e = fails(d, &["sign", "--key", "other.key", "--cert", "p256.crt", "--in", "msg", "--out", "x.p7s"]);
    assert!(e.contains("does not match"), "{e}");
    assert!(!d.join("x.p7s").exists());

    // Output files are never overwritten.
    ok(
        d,
        &[
            "sign",
            "--key",
            "p256.key",
            "--passphrase-env",
            PASS_VAR,
            "--cert",
            "p256.crt",
            "--in",
            "msg",
            "--out",
            "y.p7s",
        ],
    );
    let e = fails(
        d,
        &[
            "sign",
            "--key",
            "p256.key",
            "--passphrase-env",
            PASS_VAR,
            "--cert",
            "p256.crt",
            "--in",
            "msg",
            "--out",
            "y.p7s",
        ],
    );
    assert!(e.contains("y.p7s"), "{e}");
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["--help"][..],
        &["key", "--help"],
        &["key", "generate", "--help"],
        &["key", "public", "--help"],
        &["csr", "--help"],
        &["cert", "self-sign", "--help"],
        &["sign", "--help"],
        &["verify", "--help"],
    ] {
        let out = ok(dir.path(), cmd);
        assert!(out.contains("Usage"), "{cmd:?}: {out}");
    }
}
