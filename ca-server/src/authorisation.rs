//! Checking a legal representative's authorisation of an operator (STANDARDS.md R55, R56).
//!
//! An `enterprise-operator` registration carries an attached CMS SignedData over a
//! [`policies::authorisation::OperatorAuthorisation`] (made by `eport operator authorise`).
//! [`verify`] accepts it only when all of these hold:
//!
//! 1. the CMS verifies (signature, message digest, CAdES signing-certificate binding), with
//!    exactly one signer and the content attached;
//! 2. the signer's certificate is one this CA issued, byte for byte the one in our store,
//!    from the `enterprise-legal-rep` profile, `good` (not revoked, not on hold) and inside
//!    its validity now;
//! 3. that certificate's USCC is the registration's, and so is the document's;
//! 4. the document passes its own rules (format, hash shape, issued and not expired, at most
//!    90 days) and names the operator of the registration;
//! 5. the operator is not the legal representative: the name differs from the signer's
//!    registered name. (Two different people can share a name; such an operator is refused
//!    and the case goes to the registration desk. The identity-document hash in the
//!    authorisation is what tells people apart when they come in person.)
//! 6. the authorisation was not used before: the digest of its document is UNIQUE in `operator_authorisations`
//!    (checked here and again by the INSERT, so concurrent replays lose too).

use base64::Engine as _;
use der::Encode as _;
use policies::authorisation::OperatorAuthorisation;
use sha2::{Digest as _, Sha256};
use signer_lib::envelope::{self, SignerBinding};
use time::OffsetDateTime;

use crate::Error;
use crate::store::{OperatorAuthorisationRow, Store};

/// The profile whose certificates may authorise operators.
pub const AUTHORISING_PROFILE: &str = "enterprise-legal-rep";

/// What `verify` established, ready to be stored with the registration.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The signed document.
    pub document: OperatorAuthorisation,
    /// The row to insert (its `registration_id` is filled in by the caller).
    pub row: OperatorAuthorisationRow,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::bad("authorisation", reason)
}

/// Decodes the `authorisation` field: the PEM of the CMS (`-----BEGIN CMS-----`) or the
/// base64 of its DER.
fn decode(encoded: &str) -> Result<Vec<u8>, Error> {
    let trimmed = encoded.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| bad(format!("neither PEM nor base64 of a CMS SignedData: {e}")))
}

/// Checks `encoded` as the authorisation of an operator named `operator_name` of the
/// enterprise `uscc` at `now` (see the module documentation for the rules).
///
/// # Errors
/// [`Error::BadRequest`] (field `authorisation`) naming the first rule broken;
/// [`Error::Store`] when the store cannot be read.
pub async fn verify(
    store: &Store,
    encoded: &str,
    uscc: &str,
    operator_name: &str,
    now: OffsetDateTime,
) -> Result<Verified, Error> {
    let cms = decode(encoded)?;
    let report = envelope::verify(&cms, None).map_err(|e| bad(format!("the signature does not verify: {e}")))?;
    if report.detached {
        return Err(bad("the authorisation must carry its content (attached signature)"));
    }
    let [signer] = report.signers.as_slice() else {
        return Err(bad(format!("{} signers; an authorisation has exactly one", report.signers.len())));
    };
    if signer.binding != SignerBinding::Verified {
        return Err(bad("the signature does not bind its certificate (no ESS signing-certificate attribute)"));
    }

    let serial = signer.serial_hex.to_ascii_lowercase();
    let certificate_der = signer.certificate.to_der().map_err(|e| bad(format!("signer certificate: {e}")))?;
    let not_ours = || bad(format!("signed by certificate {serial}, which this CA did not issue"));
    let row = store.certificate(&serial).await?.ok_or_else(not_ours)?;
    if row.der.as_deref() != Some(certificate_der.as_slice()) {
        return Err(not_ours());
    }
    if row.profile != AUTHORISING_PROFILE {
        return Err(bad(format!(
            "signed by a {} certificate; only the legal representative's ({AUTHORISING_PROFILE}) can authorise",
            row.profile
        )));
    }
    let unix = now.unix_timestamp();
    if row.status != "good" {
        return Err(bad(format!("the legal representative's certificate {serial} is {}", row.status)));
    }
    if unix < row.not_before || unix > row.not_after {
        return Err(bad(format!("the legal representative's certificate {serial} is not valid now")));
    }
    if row.uscc.as_deref() != Some(uscc) {
        return Err(bad("signed by the legal representative of another enterprise"));
    }

    let document = OperatorAuthorisation::parse(&report.content).map_err(|e| bad(e.to_string()))?;
    document.check(now).map_err(|e| bad(e.to_string()))?;
    if document.uscc != uscc {
        return Err(bad(format!("authorises an operator of {}, not of {uscc}", document.uscc)));
    }
    if document.operator_name != operator_name {
        return Err(bad(format!(
            "authorises {:?}, but the registration is for {operator_name:?}",
            document.operator_name
        )));
    }
    let legal_rep_name = match &row.registration_id {
        Some(id) => {
            let mut conn = store.pool().acquire().await?;
            store.registration(&mut conn, id).await?.map(|r| r.person_name)
        }
        None => None,
    };
    if legal_rep_name.as_deref() == Some(operator_name) {
        return Err(bad("names the legal representative; an operator must be a different person"));
    }

    // The digest of the signed document, not of the CMS: the same authorisation re-encoded (PEM,
    // base64, BER) is still the same authorisation.
    let digest = hex::encode(Sha256::digest(&report.content));
    if let Some(used_by) = store.authorisation_use(&digest).await? {
        return Err(bad(format!("this authorisation was already used (registration {used_by})")));
    }
    let row = OperatorAuthorisationRow {
        registration_id: String::new(),
        digest,
        signer_serial: serial,
        id_number_hash: document.id_number_hash.clone(),
        cms_base64: base64::engine::general_purpose::STANDARD.encode(&cms),
        created_at: unix,
    };
    Ok(Verified { document, row })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pem_and_base64_and_refuses_other_text() {
        assert_eq!(decode("-----BEGIN CMS-----\nAAAA\n-----END CMS-----\n").unwrap()[0], b'-');
        assert_eq!(decode(" AAEC\nAw== ").unwrap(), vec![0, 1, 2, 3]);
        assert!(matches!(decode("not base64!"), Err(Error::BadRequest { what: "authorisation", .. })));
    }
}
