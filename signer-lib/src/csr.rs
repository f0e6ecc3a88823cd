//! PKCS#10 certification requests (RFC 2986) signed by any [`Signer`], and the check of a
//! request's proof of possession.

use std::str::FromStr;

use der::{Decode, Encode, EncodePem};
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::name::Name;
use x509_cert::request::CertReq;

use crate::key::{BuilderSigner, SignatureBytes};
use crate::verify::{VerifyOptions, verify_signature_with};
use crate::{Error, Signer};

/// Parses a distinguished name written as in RFC 4514 (`CN=Zhang San,O=Example,C=CN`).
///
/// # Errors
/// [`Error::Malformed`] when the string is not a distinguished name.
pub fn parse_name(subject: &str) -> Result<Name, Error> {
    Name::from_str(subject).map_err(|e| Error::der("subject name", e))
}

/// Builds a PKCS#10 request for `subject`, signed by `signer` (on a token, the token signs).
///
/// # Errors
/// [`Error::Malformed`] for a bad subject; the signer's error when signing fails.
pub fn build(signer: &dyn Signer, subject: &str) -> Result<CertReq, Error> {
    let name = parse_name(subject)?;
    let adapter = BuilderSigner(signer);
    let builder = RequestBuilder::new(name, &adapter).map_err(|e| Error::der("certification request", e))?;
    builder.build::<SignatureBytes>().map_err(|e| match e {
        x509_cert::builder::Error::Signature(s) => Error::SigningFailed(s.to_string()),
        other => Error::der("certification request", other),
    })
}

/// PEM (`CERTIFICATE REQUEST`) of a request.
///
/// # Errors
/// Only if encoding fails.
pub fn to_pem(req: &CertReq) -> Result<String, Error> {
    req.to_pem(der::pem::LineEnding::LF).map_err(|e| Error::der("certification request", e))
}

/// Parses a request (PEM or DER) and checks its signature with its own public key (proof of
/// possession). SM2 requests are checked under the default distinguishing ID.
///
/// # Errors
/// [`Error::Malformed`] for bytes that are not a request; [`Error::BadSignature`] when the
/// signature does not verify; [`Error::UnsupportedAlgorithm`] for other key types.
pub fn parse_and_verify(bytes: &[u8]) -> Result<CertReq, Error> {
    let req = match std::str::from_utf8(bytes) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
            use der::DecodePem;
            CertReq::from_pem(text.trim()).map_err(|e| Error::der("certification request", e))?
        }
        _ => CertReq::from_der(bytes).map_err(|e| Error::der("certification request", e))?,
    };
    let info = req.info.to_der().map_err(|e| Error::der("certification request", e))?;
    let spki = req.info.public_key.to_der().map_err(|e| Error::der("certification request", e))?;
    let sig =
        req.signature.as_bytes().ok_or_else(|| Error::BadSignature("signature BIT STRING has unused bits".into()))?;
    verify_signature_with(&spki, req.algorithm.oid, &info, sig, &VerifyOptions::default())?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SignatureAlgorithm;
    use crate::key::software::SoftwareKey;

    #[test]
    fn builds_requests_whose_proof_of_possession_verifies() {
        for alg in SignatureAlgorithm::ALL {
            let key = SoftwareKey::generate(alg).unwrap();
            let req = build(&key, "CN=Zhang San,O=Example Trading,C=CN").unwrap();
            let der_bytes = req.to_der().unwrap();
            parse_and_verify(&der_bytes).unwrap();
            parse_and_verify(to_pem(&req).unwrap().as_bytes()).unwrap();
        }
    }

    #[test]
    fn rejects_a_request_with_a_tampered_subject() {
        let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let mut req = build(&key, "CN=Zhang San,C=CN").unwrap();
        req.info.subject = parse_name("CN=Li Si,C=CN").unwrap();
        assert!(matches!(parse_and_verify(&req.to_der().unwrap()), Err(Error::BadSignature(_))));
    }

    #[test]
    fn rejects_garbage_requests() {
        assert!(matches!(parse_and_verify(b"\x30\x03\x02\x01\x01"), Err(Error::Malformed { .. })));
        assert!(matches!(
            parse_and_verify(b"-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----"),
            Err(Error::Malformed { .. })
        ));
    }
}
