//! The HTTPS listener's rustls configuration.
//!
//! - **Provider**: ring, named explicitly (never the process default), TLS 1.3 and 1.2.
//! - **Server key**: any signer-lib [`Signer`] — a software key, a PKCS#11 token or a YubiHSM —
//!   through signer-lib's [`SignerKey`] (feature `tls`), so the HTTPS key can live where the CA keys live.
//! - **Client certificates**: optional at the TLS level
//!   ([`WebPkiClientVerifier`]`::builder(..).allow_unauthenticated()`), because `POST
//!   /api/v1/enrol` is reached without one; every other endpoint is refused by the
//!   authorisation layer ([`crate::authz`]) when no certificate was presented. A certificate
//!   that *is* presented must chain to one of our roots, or the handshake fails.
//! - **P-256 only**: rustls has no SM2 (there is no SM2 `SignatureScheme` for TLS 1.2/1.3 in
//!   rustls, and RFC 8998's `sm2sig_sm3` is not implemented), so officers, platforms and
//!   subscribers authenticate over TLS with P-256 certificates under the P-256 root, and the
//!   server certificate is P-256. SM2 certificates are issued and used for signing documents,
//!   not for TLS client authentication to this server.

use std::sync::Arc;

use der::Decode;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{RootCertStore, ServerConfig};
use signer_lib::algorithm::{ID_EC_PUBLIC_KEY, SECP256R1};
use signer_lib::{SignatureAlgorithm, Signer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The server key cannot sign in TLS (only P-256 and Ed25519 can, in rustls).
    #[error("the HTTPS server key is {algorithm:?}; TLS needs a P-256 (or Ed25519) key")]
    UnsupportedServerKey {
        /// The key's algorithm.
        algorithm: SignatureAlgorithm,
    },
    /// No server certificate was given.
    #[error("the HTTPS server certificate chain is empty")]
    EmptyChain,
    /// None of the roots is a P-256 root, so no client certificate could ever be accepted.
    #[error("no P-256 root to verify client certificates with ({skipped} non-P-256 roots skipped)")]
    NoClientRoots {
        /// How many roots were not P-256.
        skipped: usize,
    },
    /// A root certificate could not be parsed.
    #[error("client root certificate {index}: {reason}")]
    BadRoot {
        /// Its position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (including a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

pub use signer_lib::tls::{SignerKey, provider};

/// Whether a certificate's key is an EC P-256 key.
fn is_p256(cert_der: &[u8]) -> Result<bool, der::Error> {
    let cert = x509_cert::Certificate::from_der(cert_der)?;
    let algorithm = &cert.tbs_certificate.subject_public_key_info.algorithm;
    let curve = algorithm.parameters.as_ref().and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok());
    Ok(algorithm.oid == ID_EC_PUBLIC_KEY && curve == Some(SECP256R1))
}

/// The trust anchors for client certificates: the P-256 roots among `roots_der`.
///
/// # Errors
/// [`TlsError::BadRoot`] for a root that does not parse, [`TlsError::NoClientRoots`] when no
/// root is P-256.
pub fn client_roots(roots_der: &[Vec<u8>]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let mut skipped = 0;
    for (index, der) in roots_der.iter().enumerate() {
        let bad = |reason: String| TlsError::BadRoot { index, reason };
        if !is_p256(der).map_err(|e| bad(e.to_string()))? {
            skipped += 1;
            continue;
        }
        store.add(CertificateDer::from(der.clone())).map_err(|e| bad(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(TlsError::NoClientRoots { skipped });
    }
    Ok(store)
}

/// The HTTPS server configuration: `chain_der` (server certificate first, then its issuers)
/// and its `key`, client certificates optional but verified against the P-256 CA certificates
/// in `client_roots_der` (trust anchors: our P-256 root, and our P-256 issuing CA so that a
/// client that sends only its leaf is still accepted), TLS 1.3 and 1.2 over ring, ALPN h2 and
/// http/1.1.
///
/// # Errors
/// [`TlsError`] when the key cannot do TLS, does not match the certificate, or no root is usable.
pub fn server_config(
    chain_der: &[Vec<u8>],
    key: Arc<dyn Signer>,
    client_roots_der: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, TlsError> {
    if chain_der.is_empty() {
        return Err(TlsError::EmptyChain);
    }
    let provider = provider();
    let roots = Arc::new(client_roots(client_roots_der)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;

    let algorithm = key.algorithm();
    // Refuses an SM2 key, and a key whose public half is not the certificate's.
    let certified = signer_lib::tls::certified_key(chain_der, key).map_err(|e| match e {
        signer_lib::Error::UnsupportedAlgorithm { .. } => TlsError::UnsupportedServerKey { algorithm },
        other => TlsError::Rustls(other.to_string()),
    })?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use rustls::SignatureScheme;
    use rustls::sign::SigningKey as _;
    use signer_lib::key::software::SoftwareKey;

    use super::*;

    #[test]
    fn offers_ecdsa_p256_only_when_the_peer_does() {
        let key =
            SignerKey::new(Arc::new(SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap())).unwrap();
        assert!(key.choose_scheme(&[SignatureScheme::RSA_PSS_SHA256]).is_none());
        let signer = key.choose_scheme(&[SignatureScheme::ED25519, SignatureScheme::ECDSA_NISTP256_SHA256]).unwrap();
        assert_eq!(signer.scheme(), SignatureScheme::ECDSA_NISTP256_SHA256);
        // The signature is DER (SEQUENCE ...), what TLS wants.
        let signature = signer.sign(b"transcript").unwrap();
        assert_eq!(signature[0], 0x30);
        assert!(key.public_key().is_some());
    }

    fn self_signed(key: &SoftwareKey, subject: &str) -> Vec<u8> {
        let cert = signer_lib::certificate::self_signed_ca(key, subject, std::time::Duration::from_secs(3600)).unwrap();
        der::Encode::to_der(&cert).unwrap()
    }

    #[test]
    fn builds_a_config_and_refuses_a_key_that_is_not_the_certificates() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = Arc::new(SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap());
        let cert = self_signed(&key, "CN=server,C=CN");
        let config = server_config(std::slice::from_ref(&cert), key, std::slice::from_ref(&cert)).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);

        let other = Arc::new(SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap());
        assert!(matches!(
            server_config(std::slice::from_ref(&cert), other, std::slice::from_ref(&cert)),
            Err(TlsError::Rustls(_))
        ));
    }

    #[test]
    fn trusts_only_p256_roots_for_client_certificates() {
        let sm2 = SoftwareKey::generate(SignatureAlgorithm::Sm2Sm3).unwrap();
        let sm2_root = self_signed(&sm2, "CN=sm2 root,C=CN");
        assert!(matches!(client_roots(std::slice::from_ref(&sm2_root)), Err(TlsError::NoClientRoots { skipped: 1 })));
        let p256 = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let p256_root = self_signed(&p256, "CN=p256 root,C=CN");
        assert_eq!(client_roots(&[sm2_root, p256_root]).unwrap().len(), 1);
        assert!(matches!(client_roots(&[b"garbage".to_vec()]), Err(TlsError::BadRoot { index: 0, .. })));
    }

    #[test]
    fn refuses_an_sm2_server_key() {
        let sm2 = Arc::new(SoftwareKey::generate(SignatureAlgorithm::Sm2Sm3).unwrap());
        assert!(SignerKey::new(sm2.clone()).is_err());
        let cert = self_signed(&sm2, "CN=sm2 server,C=CN");
        let p256 = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let client_root = self_signed(&p256, "CN=p256 root,C=CN");
        assert!(matches!(
            server_config(std::slice::from_ref(&cert), sm2, std::slice::from_ref(&client_root)),
            Err(TlsError::UnsupportedServerKey { .. })
        ));
    }
}
