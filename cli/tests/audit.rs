#![allow(clippy::unwrap_used)] // test helpers may panic on impossible failures
//! `eport audit` end to end on SQLite: sign and verify append records, heads, full verification,
//! proofs checked offline, consistency, export, and tampering caught with the index named.

use std::path::Path;
use std::process::{Command, Output};

const PASS_VAR: &str = "EPORT_TEST_PASSPHRASE";

fn eport(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eport"))
        .args(args)
        .current_dir(dir)
        .env(PASS_VAR, "audit test passphrase")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = eport(dir, args);
    assert!(out.status.success(), "eport {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = eport(dir, args);
    assert!(!out.status.success(), "eport {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn sql(db: &Path, statement: &str) {
    // An attacker with the database file first drops the store's append-only triggers.
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
        for (n,) in c.execute(\"select name from sqlite_master where type='trigger'\").fetchall(): c.execute('drop trigger ' + n)\n\
        c.executescript(sys.argv[2]); c.commit()";
    let out = Command::new("python3").args(["-c", script]).arg(db).arg(statement).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A log with a signer, three message records and a signed head; returns the log URL.
fn populated_log(d: &Path) -> String {
    let log = format!("sqlite:{}", d.join("audit.db").display());
    ok(d, &["key", "generate", "--algorithm", "p256", "--key", "log.key", "--passphrase-env", PASS_VAR]);
    ok(d, &["audit", "init", "--log", &log, "--key", "log.key", "--passphrase-env", PASS_VAR]);
    ok(d, &["key", "generate", "--algorithm", "sm2", "--key", "signer.key"]);
    ok(
        d,
        &[
            "cert",
            "self-sign",
            "--key",
            "signer.key",
            "--subject",
            "CN=Zhang San,O=Example,C=CN",
            "--out",
            "signer.crt",
        ],
    );
    std::fs::write(d.join("msg"), b"<Declaration/>").unwrap();
    ok(d, &["sign", "--key", "signer.key", "--cert", "signer.crt", "--in", "msg", "--out", "msg.p7s", "--log", &log]);
    ok(d, &["verify", "--in", "msg", "--sig", "msg.p7s", "--log", &log]);
    std::fs::write(d.join("other"), b"<Declaration>changed</Declaration>").unwrap();
    fails(d, &["verify", "--in", "other", "--sig", "msg.p7s", "--log", &log]);
    ok(d, &["audit", "head", "--log", &log, "--key", "log.key", "--passphrase-env", PASS_VAR, "--out", "head.txt"]);
    log
}

#[test]
fn records_messages_and_proves_them_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = populated_log(d);

    let report = ok(d, &["audit", "verify", "--log", &log, "--trusted-head", "head.txt"]);
    assert!(report.contains("intact: 3 records"), "{report}");

    let lines = ok(d, &["audit", "query", "--log", &log, "--json"]);
    let events: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["event"], "message_signed");
    assert!(events[0]["object"].as_str().unwrap().starts_with("sha256:"));
    assert!(events[0]["actor"].as_str().unwrap().contains("CN=Zhang San"));
    assert_eq!(events[1]["event"], "message_verified");
    assert_eq!(events[1]["outcome"], "success");
    assert!(events[2]["outcome"]["failure"].is_string());
    let only_signed = ok(d, &["audit", "query", "--log", &log, "--event", "message_signed"]);
    assert_eq!(only_signed.lines().count(), 1, "{only_signed}");

    ok(d, &["audit", "prove", "--log", &log, "--index", "1", "--out", "proof.json"]);
    ok(d, &["audit", "export", "--log", &log, "--out", "export"]);
    let checked = ok(
        d,
        &[
            "audit",
            "check-proof",
            "--head",
            "head.txt",
            "--proof",
            "proof.json",
            "--public-key",
            "export/log-public-key.pem",
        ],
    );
    assert!(checked.starts_with("valid: record 1"), "{checked}");
    assert_eq!(std::fs::read_to_string(d.join("export/records.jsonl")).unwrap().lines().count(), 3);

    // The proof, altered, fails offline.
    let text = std::fs::read_to_string(d.join("proof.json")).unwrap();
    let mut bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
    bundle["leaf_index"] = serde_json::json!(0);
    std::fs::write(d.join("bad-proof.json"), bundle.to_string()).unwrap();
    let e = fails(d, &["audit", "check-proof", "--head", "head.txt", "--proof", "bad-proof.json"]);
    assert!(e.contains("INVALID"), "{e}");

    // A head signed by another key is refused against the pinned key.
    let other = format!("sqlite:{}", d.join("other.db").display());
    ok(d, &["key", "generate", "--algorithm", "p256", "--key", "other.key"]);
    ok(d, &["audit", "init", "--log", &other, "--key", "other.key"]);
    ok(d, &["audit", "head", "--log", &other, "--key", "other.key", "--out", "other-head.txt"]);
    let e = fails(
        d,
        &[
            "audit",
            "check-proof",
            "--head",
            "other-head.txt",
            "--proof",
            "proof.json",
            "--public-key",
            "export/log-public-key.pem",
        ],
    );
    assert!(e.contains("not signed by the log key"), "{e}");
    // ... and the log does not extend another log's head.
    let e = fails(d, &["audit", "consistency", "--log", &log, "--old-head", "other-head.txt"]);
    assert!(e.contains("INCONSISTENT"), "{e}");
    ok(d, &["audit", "consistency", "--log", &log, "--old-head", "head.txt"]);
}

#[test]
fn verify_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = populated_log(d);
    let db = d.join("audit.db");
    sql(&db, "UPDATE audit_records SET record = (SELECT record FROM audit_records WHERE idx = 0) WHERE idx = 1;");
    let e = fails(d, &["audit", "verify", "--log", &log]);
    assert!(e.contains("INVALID") && e.contains("record 1"), "{e}");
}

#[test]
fn verify_catches_a_deleted_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = populated_log(d);
    sql(&d.join("audit.db"), "DELETE FROM audit_records WHERE idx = 1;");
    let e = fails(d, &["audit", "verify", "--log", &log]);
    assert!(e.contains("INVALID") && e.contains("record 1"), "{e}");
}

#[test]
fn signing_fails_closed_when_the_log_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["key", "generate", "--algorithm", "p256", "--key", "k.key"]);
    ok(d, &["cert", "self-sign", "--key", "k.key", "--subject", "CN=A,C=CN", "--out", "k.crt"]);
    std::fs::write(d.join("msg"), b"m").unwrap();
    let e = fails(
        d,
        &[
            "sign",
            "--key",
            "k.key",
            "--cert",
            "k.crt",
            "--in",
            "msg",
            "--out",
            "m.p7s",
            "--log",
            "sqlite:/nonexistent/dir/audit.db",
        ],
    );
    assert!(e.contains("audit log"), "{e}");
    assert!(!d.join("m.p7s").exists(), "a signature was written although its audit record was not");
}
