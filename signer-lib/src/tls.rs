//! Any [`Signer`] as a rustls signing key, for TLS whose private key stays where it lives: a
//! server key on an HSM, a subscriber's client key on a USB token (feature `tls`).
//!
//! TLS wants exactly what [`Signer::sign`] gives: the message unhashed in, and for ECDSA a DER
//! `Ecdsa-Sig-Value` out (RFC 8446 §4.2.3), for Ed25519 the raw 64 bytes. A P-256 key offers
//! `ecdsa_secp256r1_sha256`; an Ed25519 key offers `ed25519`. rustls has no SM2 signature
//! scheme (RFC 8998's `sm2sig_sm3` is not implemented), so SM2 keys cannot do TLS here.
//!
//! Signing happens inside the handshake: a software key takes tens of microseconds, a token
//! tens of milliseconds, and a device that does one operation at a time (a YubiHSM, a USB
//! token) stalls the handshake for the round-trip.
//!
//! The provider is always ring, named explicitly ([`provider`]), never the process default.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, SignatureScheme};

use crate::{Error, SignatureAlgorithm, Signer};

/// The ring provider, whatever the process default is.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A [`Signer`] as a [`rustls::sign::SigningKey`].
pub struct SignerKey {
    signer: Arc<dyn Signer>,
}

impl SignerKey {
    /// Wraps `signer`.
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for SM2 (rustls cannot use it).
    pub fn new(signer: Arc<dyn Signer>) -> Result<Self, Error> {
        match signer.algorithm() {
            SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::Ed25519 => Ok(Self { signer }),
            other => {
                Err(Error::UnsupportedAlgorithm { oid: format!("{other:?} in TLS (rustls has P-256 and Ed25519)") })
            }
        }
    }

    fn scheme(&self) -> Option<SignatureScheme> {
        match self.signer.algorithm() {
            SignatureAlgorithm::EcdsaP256Sha256 => Some(SignatureScheme::ECDSA_NISTP256_SHA256),
            SignatureAlgorithm::Ed25519 => Some(SignatureScheme::ED25519),
            _ => None,
        }
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey").field("signer", &self.signer).finish()
    }
}

impl rustls::sign::SigningKey for SignerKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        let scheme = self.scheme()?;
        offered.contains(&scheme).then(|| {
            Box::new(SchemeSigner { signer: Arc::clone(&self.signer), scheme }) as Box<dyn rustls::sign::Signer>
        })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.signer.public_key_der()))
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        match self.signer.algorithm() {
            SignatureAlgorithm::EcdsaP256Sha256 => rustls::SignatureAlgorithm::ECDSA,
            SignatureAlgorithm::Ed25519 => rustls::SignatureAlgorithm::ED25519,
            // `new` admits no other algorithm.
            _ => rustls::SignatureAlgorithm::Anonymous,
        }
    }
}

/// One handshake's signer, bound to the scheme [`SignerKey`] picked.
#[derive(Debug)]
struct SchemeSigner {
    signer: Arc<dyn Signer>,
    scheme: SignatureScheme,
}

impl rustls::sign::Signer for SchemeSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.signer.sign(message).map_err(|e| rustls::Error::General(format!("TLS key: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// `chain_der` (leaf first) with `key`, checked to match (the key's public key is the leaf's).
///
/// # Errors
/// [`Error::UnsupportedAlgorithm`] for an SM2 key; [`Error::KeyCertificateMismatch`] when the
/// key is not the leaf's, or the chain is empty.
pub fn certified_key(chain_der: &[Vec<u8>], key: Arc<dyn Signer>) -> Result<CertifiedKey, Error> {
    if chain_der.is_empty() {
        return Err(Error::KeyCertificateMismatch { subject: "(an empty certificate chain)".into() });
    }
    let chain: Vec<CertificateDer<'static>> = chain_der.iter().map(|c| CertificateDer::from(c.clone())).collect();
    let certified = CertifiedKey::new(chain, Arc::new(SignerKey::new(key)?));
    certified.keys_match().map_err(|_| Error::KeyCertificateMismatch { subject: leaf_subject(&chain_der[0]) })?;
    Ok(certified)
}

fn leaf_subject(der: &[u8]) -> String {
    use der::Decode as _;
    x509_cert::Certificate::from_der(der)
        .map_or_else(|_| "(an unparsable certificate)".to_owned(), |c| c.tbs_certificate.subject.to_string())
}

/// A client's TLS identity: its certificate chain (leaf first, DER) and the key of the leaf.
#[derive(Clone)]
pub struct ClientIdentity<'a> {
    /// The client certificate, then its issuing CA(s).
    pub chain_der: &'a [Vec<u8>],
    /// The leaf's key; its private half may stay on a token.
    pub key: Arc<dyn Signer>,
}

impl fmt::Debug for ClientIdentity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity").field("certificates", &self.chain_der.len()).field("key", &self.key).finish()
    }
}

/// A TLS 1.3/1.2 client configuration (ring) that trusts only `roots_der` — no system roots:
/// a CA is pinned, never "insecure" — and, when `client` is given, authenticates with that
/// certificate chain and key (whose private half may stay on a token).
///
/// # Errors
/// [`Error::Malformed`] when no root is usable by rustls (unusable ones are skipped); as
/// [`certified_key`]
/// for the client key.
pub fn client_config(roots_der: &[Vec<u8>], client: Option<ClientIdentity<'_>>) -> Result<ClientConfig, Error> {
    let malformed = |reason: String| Error::Malformed { what: "TLS trust anchor", reason };
    let mut roots = RootCertStore::empty();
    // Roots rustls cannot use (an SM2 root next to the P-256 one) are skipped: they can
    // anchor no TLS server anyway.
    let (_, skipped) = roots.add_parsable_certificates(roots_der.iter().map(|d| CertificateDer::from(d.clone())));
    if roots.is_empty() {
        return Err(malformed(format!("no usable root certificate to trust ({skipped} unusable)")));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| malformed(e.to_string()))?
        .with_root_certificates(roots);
    Ok(match client {
        Some(ClientIdentity { chain_der, key }) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified_key(chain_der, key)?)))
        }
        None => builder.with_no_client_auth(),
    })
}
