//! The one error type of the policies crate.

use std::fmt;

use crate::lint::Finding;

/// Everything that can go wrong when loading a profile or issuing a certificate from one.
/// Variants carry the values that explain the failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A profile file is not valid TOML or does not fit the schema (unknown or misspelt key,
    /// wrong type, unknown enum value).
    #[error("profile {origin}: {reason}")]
    ProfileParse {
        /// The file (or `<embedded:id>`) the TOML came from.
        origin: String,
        /// The TOML parser's complaint, with line and column.
        reason: String,
    },
    /// A profile parses but contradicts itself (a CA without keyCertSign, an id that is not
    /// the file name, ...).
    #[error("profile {id}: {reason}")]
    ProfileInvalid {
        /// The profile id.
        id: String,
        /// What is inconsistent.
        reason: String,
    },
    /// No profile has this id.
    #[error("no certificate profile with id {0:?}")]
    UnknownProfile(String),
    /// Two profile files carry the same id.
    #[error("two profiles with id {0:?}")]
    DuplicateProfile(String),
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A unified social credit code (统一社会信用代码) that GB 32100-2015 does not allow.
    #[error("invalid unified social credit code {code:?}: {reason}")]
    InvalidUscc {
        /// The code as given.
        code: String,
        /// What is wrong with it (length, a character, the check character).
        reason: UsccDefect,
    },
    /// Subject data that cannot go into a certificate (empty, too long, bad characters).
    #[error("invalid subject {field}: {reason}")]
    InvalidSubject {
        /// The field (`name`, `agency_code`, `dns_names[0]`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request's subject data is of another kind than the profile's.
    #[error("profile {profile} takes {expected} subject data, the request has {found}")]
    SubjectKindMismatch {
        /// The profile id.
        profile: String,
        /// The kind the profile asks for.
        expected: &'static str,
        /// The kind the request carries.
        found: &'static str,
    },
    /// The subject's key algorithm is not one the profile allows.
    #[error("profile {profile} does not allow {algorithm} keys")]
    KeyAlgorithmNotAllowed {
        /// The profile id.
        profile: String,
        /// The key algorithm found in the request.
        algorithm: String,
    },
    /// Self-signed vs issued does not match the profile: a root profile issued under an
    /// issuer, an issued profile without one, or a self-signed request for another key.
    #[error("profile {profile}: {reason}")]
    IssuerMismatch {
        /// The profile id.
        profile: String,
        /// What does not fit.
        reason: String,
    },
    /// The profile asks for a URL (OCSP, CA issuers, CRL) the request does not carry, or the
    /// request carries one the profile does not include.
    #[error("profile {profile}: {reason}")]
    Urls {
        /// The profile id.
        profile: String,
        /// Which URL is missing or unexpected, or why it is not acceptable.
        reason: String,
    },
    /// A time that X.509 cannot express (before 1970 or after 9999), or notAfter before
    /// notBefore.
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    /// A DER encoding or decoding failed.
    #[error("{what}: {reason}")]
    Der {
        /// What was being encoded or decoded.
        what: &'static str,
        /// The encoder's complaint.
        reason: String,
    },
    /// The signer (issuing key, or the throwaway key of pre-issuance linting) failed, or
    /// signer-lib refused something (key not matching the issuer certificate, ...).
    #[error(transparent)]
    Signer(#[from] signer_lib::Error),
    /// Pre-issuance linting found errors: nothing was signed with the issuing key.
    #[error("certificate refused by the linter: {}", FindingList(.0))]
    Lint(Vec<Finding>),
    /// The to-be-signed certificate built for the real key differs from the one that was
    /// linted. It cannot happen unless building is not deterministic; nothing was signed.
    #[error("the TBS certificate changed between linting and signing")]
    TbsChanged,
    /// The issuing key produced a signature that does not verify under the issuer's public
    /// key (a faulty device, or a key that is not the issuer's).
    #[error("the issuing key's signature does not verify: {0}")]
    BadIssuerSignature(String),
}

impl Error {
    /// A [`Error::Der`] from a DER error.
    pub(crate) fn der(what: &'static str, e: impl fmt::Display) -> Self {
        Self::Der { what, reason: e.to_string() }
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}

/// Why a unified social credit code is not valid (GB 32100-2015).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsccDefect {
    /// The code is not 18 characters long.
    Length {
        /// The number of characters found.
        found: usize,
    },
    /// A character outside the code's alphabet (0-9 and A-Z without I, O, S, V, Z).
    Character {
        /// The character.
        character: char,
        /// Its position, 1-based as in the standard.
        position: usize,
    },
    /// Positions 3-8 (the registering authority's administrative division code, GB/T 2260)
    /// must be digits.
    DivisionCode {
        /// The character found.
        character: char,
        /// Its position, 1-based.
        position: usize,
    },
    /// The 18th character is not the check character of the first 17.
    CheckCharacter {
        /// The character found.
        found: char,
        /// The character the first 17 call for.
        expected: char,
    },
}

impl fmt::Display for UsccDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { found } => write!(f, "expected 18 characters, found {found}"),
            Self::Character { character, position } => write!(
                f,
                "character {character:?} at position {position} is not allowed (0-9 and A-Z without I, O, S, V, Z)"
            ),
            Self::DivisionCode { character, position } => {
                write!(f, "character {character:?} at position {position}: positions 3-8 must be digits")
            }
            Self::CheckCharacter { found, expected } => {
                write!(f, "check character is {found:?}, the first 17 characters call for {expected:?}")
            }
        }
    }
}

/// Displays findings one after the other, for [`Error::Lint`].
struct FindingList<'a>(&'a [Finding]);

impl fmt::Display for FindingList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, finding) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}
