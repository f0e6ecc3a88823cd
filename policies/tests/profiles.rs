//! The shipped profile files: every one loads, the compiled-in copies are the same, and the
//! schema refuses what it does not know.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};

use policies::profile::EMBEDDED;
use policies::{Error, Profile, Profiles};

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}

#[test]
fn loads_every_profile_file_and_they_match_the_compiled_in_copies() {
    let from_dir = Profile::load_dir(profiles_dir()).unwrap();
    let embedded = Profiles::embedded().unwrap();
    assert_eq!(from_dir, embedded);
    let ids: Vec<&str> = from_dir.ids().collect();
    assert_eq!(
        ids,
        [
            "agency",
            "enterprise-legal-rep",
            "enterprise-operator",
            "issuing-ca",
            "ocsp-signer",
            "officer",
            "root-ca",
            "tls-client",
            "tls-server",
            "tsa"
        ]
    );
    for (id, text) in EMBEDDED {
        let on_disk = std::fs::read_to_string(profiles_dir().join(format!("{id}.toml"))).unwrap();
        assert_eq!(on_disk, text, "{id}.toml differs from the compiled-in copy");
    }
}

#[test]
fn every_toml_file_in_the_directory_is_a_shipped_profile() {
    let mut files: Vec<String> = std::fs::read_dir(profiles_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    let mut shipped: Vec<String> = EMBEDDED.iter().map(|(id, _)| format!("{id}.toml")).collect();
    shipped.sort();
    assert_eq!(files, shipped, "a profile file is not in EMBEDDED (or the other way round)");
}

fn text_of(id: &str) -> &'static str {
    EMBEDDED.iter().find(|(i, _)| *i == id).map(|(_, t)| *t).unwrap()
}

#[test]
fn rejects_a_misspelt_key() {
    let text = text_of("agency").replacen("max_validity_days", "max_validty_days", 1);
    let err = Profile::from_toml(&text, "agency.toml").unwrap_err();
    let Error::ProfileParse { reason, .. } = &err else { panic!("expected ProfileParse, got {err}") };
    assert!(reason.contains("max_validty_days"), "{reason}");
}

#[test]
fn rejects_a_misspelt_key_in_a_nested_table() {
    let text = text_of("tsa").replacen("[key_usage]\ncritical", "[key_usage]\ncritcal", 1);
    assert!(matches!(Profile::from_toml(&text, "tsa.toml"), Err(Error::ProfileParse { .. })));
    let text = text_of("tsa").replacen("justification", "justifcation", 1);
    assert!(matches!(Profile::from_toml(&text, "tsa.toml"), Err(Error::ProfileParse { .. })));
}

#[test]
fn rejects_an_unknown_key_algorithm_or_key_usage_bit() {
    let text = text_of("officer").replacen("[\"p256\", \"sm2\"]", "[\"p256\", \"rsa2048\"]", 1);
    assert!(matches!(Profile::from_toml(&text, "officer.toml"), Err(Error::ProfileParse { .. })));
    let text = text_of("officer").replacen("\"digital_signature\"", "\"digital_signing\"", 1);
    assert!(matches!(Profile::from_toml(&text, "officer.toml"), Err(Error::ProfileParse { .. })));
}

#[test]
fn rejects_a_missing_required_field() {
    let text = text_of("officer").replacen("dual_control = true\n", "", 1);
    assert!(matches!(Profile::from_toml(&text, "officer.toml"), Err(Error::ProfileParse { .. })));
}

#[test]
fn rejects_a_file_not_named_after_its_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agency-copy.toml"), text_of("agency")).unwrap();
    let err = Profile::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::ProfileInvalid { .. }), "{err}");
}

#[test]
fn loads_a_directory_of_edited_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let text = text_of("tls-server").replacen("max_validity_days = 398", "max_validity_days = 90", 1);
    std::fs::write(dir.path().join("tls-server.toml"), text).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a profile").unwrap();
    let set = Profile::load_dir(dir.path()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.get("tls-server").unwrap().max_validity_days.get(), 90);
    assert!(matches!(set.get("tsa"), Err(Error::UnknownProfile(_))));
}

#[test]
fn states_the_decisions_the_brief_fixes() {
    let set = Profiles::embedded().unwrap();
    let p = |id| set.get(id).unwrap();
    assert!(p("agency").dual_control);
    assert!(!p("enterprise-legal-rep").dual_control && !p("enterprise-operator").dual_control);
    assert!(p("ocsp-signer").ocsp_nocheck);
    let tsa = p("tsa").extended_key_usage.as_ref().unwrap();
    assert!(tsa.critical);
    assert_eq!(tsa.purposes, [policies::oid::KP_TIME_STAMPING]);
    assert!(p("root-ca").self_signed && p("root-ca").is_ca() && p("issuing-ca").is_ca());
    assert_eq!(p("issuing-ca").basic_constraints.path_len, Some(0));
    for profile in set.iter() {
        assert!(profile.allows(policies::profile::KeyAlgorithm::P256), "{}", profile.id);
        assert!(profile.allows(policies::profile::KeyAlgorithm::Sm2), "{}", profile.id);
    }
}
