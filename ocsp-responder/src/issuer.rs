//! An issuing CA we answer for: its certificate, its delegated OCSP signer (certificate and
//! key), and the CertID hashes by which requests name it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};
use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use sha1::Digest as _;
use signer_lib::Signer;
use signer_lib::algorithm::{KeyType, SM3};
use spki::AlgorithmIdentifierOwned;
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_ocsp::{CertId, ResponderId};

use crate::Error;
use crate::source::{IssuerId, Serial};

/// id-kp-OCSPSigning (RFC 5280 §4.2.1.12).
pub const ID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
pub const ID_PKIX_OCSP_NOCHECK: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");
/// id-ce-extKeyUsage (RFC 5280 §4.2.1.12).
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");

/// A hash algorithm a CertID can use (RFC 6960 §4.1.1 `hashAlgorithm`).
///
/// SHA-1 is what RFC 5019 clients (and `openssl ocsp` by default) send, SHA-256 is allowed by
/// RFC 9919, and SM3 (GM/T 0004) is offered for SM2 issuers only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertIdHash {
    /// SHA-1 (1.3.14.3.2.26).
    Sha1,
    /// SHA-256 (2.16.840.1.101.3.4.2.1).
    Sha256,
    /// SM3 (1.2.156.10197.1.401).
    Sm3,
}

impl CertIdHash {
    /// All three, in a fixed order.
    pub const ALL: [Self; 3] = [Self::Sha1, Self::Sha256, Self::Sm3];

    /// The algorithm's OID.
    #[must_use]
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => ID_SHA_1,
            Self::Sha256 => ID_SHA_256,
            Self::Sm3 => SM3,
        }
    }

    /// The algorithm for an OID, parameters ignored (absent and NULL are both seen in practice).
    #[must_use]
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.oid() == *oid)
    }

    /// The AlgorithmIdentifier we put in CertIDs we build: parameters NULL, as OpenSSL and
    /// RFC 5019 responders write them.
    #[must_use]
    pub fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned { oid: self.oid(), parameters: Some(Null.into()) }
    }

    /// Hashes `data`.
    #[must_use]
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sm3 => sm3::Sm3::digest(data).to_vec(),
        }
    }

    /// A short name for logs and metrics.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sm3 => "sm3",
        }
    }
}

impl fmt::Display for CertIdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The issuerNameHash and issuerKeyHash of one issuer under one hash algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IssuerHashes {
    hash: CertIdHash,
    /// Hash of the DER of the issuer's subject Name.
    name: Vec<u8>,
    /// Hash of the issuer's subjectPublicKey BIT STRING contents (without the unused-bits octet).
    key: Vec<u8>,
}

/// An issuing CA we answer for, with the delegated responder that signs for it.
///
/// Built with [`Issuer::new`], which refuses a responder certificate that RFC 6960
/// §4.2.2.2 would not accept, and a key that is not the responder certificate's.
pub struct Issuer {
    id: IssuerId,
    ca: Certificate,
    responder: Certificate,
    /// `responder` as DER, copied into every response.
    responder_der: Vec<u8>,
    signer: Arc<dyn Signer>,
    /// The DER AlgorithmIdentifier of the signer's signatures.
    signature_algorithm_der: Vec<u8>,
    signing_time: SigningTime,
    responder_id: ResponderId,
    /// `responder_id` as DER.
    responder_id_der: Vec<u8>,
    hashes: Vec<IssuerHashes>,
    key_type: KeyType,
}

/// Signing time at or below which [`Issuer::signs_quickly`] holds: a signature this short
/// can be made on an async worker thread (tokio's guidance is 10–100 µs between awaits)
/// instead of being handed to the blocking pool, whose hand-off (two thread wake-ups) costs
/// more CPU than a software ECDSA signature.
pub const QUICK_SIGNATURE: Duration = Duration::from_micros(100);

/// Samples are clamped here before they enter the average, so one stall (a preempted thread,
/// a device hiccup) moves the estimate over [`QUICK_SIGNATURE`] for a few signatures only.
const SAMPLE_CAP_NANOS: u64 = 1_000_000;

/// A running average of one signer's signing time, in nanoseconds (weight 1/8 per sample).
/// It starts at [`SAMPLE_CAP_NANOS`], "slow", so a signer is trusted to be quick only after
/// about twenty signatures have shown it (the first refresh pass makes them).
#[derive(Debug)]
struct SigningTime(AtomicU64);

impl SigningTime {
    fn new() -> Self {
        Self(AtomicU64::new(SAMPLE_CAP_NANOS))
    }

    fn record(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).min(SAMPLE_CAP_NANOS);
        // Lost updates between racing threads only drop a sample.
        let old = self.0.load(Ordering::Relaxed);
        let new = if sample >= old { old + (sample - old) / 8 } else { old - (old - sample) / 8 };
        self.0.store(new, Ordering::Relaxed);
    }

    fn estimate(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("id", &self.id)
            .field("ca", &self.ca.tbs_certificate.subject.to_string())
            .field("responder", &self.responder.tbs_certificate.subject.to_string())
            .field("signer", &self.signer)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer `id` (the CA database's name for it) with CA certificate `ca`, answered for by
    /// `responder` whose private key is `signer`.
    ///
    /// Checks, at `now`: `responder` is issued by `ca` (name and signature), carries
    /// id-kp-OCSPSigning and id-pkix-ocsp-nocheck, is within its validity period, and `signer`
    /// holds its key. CertID hashes are computed for SHA-1 and SHA-256, and SM3 when the CA
    /// key is SM2.
    ///
    /// # Errors
    /// [`Error::NotDelegated`] naming the failed check; [`Error::Der`] for certificates that
    /// do not re-encode.
    pub fn new(
        id: IssuerId,
        ca: Certificate,
        responder: Certificate,
        signer: Arc<dyn Signer>,
        now: OffsetDateTime,
    ) -> Result<Self, Error> {
        let refuse = |reason: String| Error::NotDelegated {
            issuer: id.0.clone(),
            subject: responder.tbs_certificate.subject.to_string(),
            reason,
        };
        check_delegation(&ca, &responder, now).map_err(refuse)?;
        signer_lib::key::check_matches_certificate(&*signer, &responder).map_err(|e| refuse(e.to_string()))?;

        let ca_spki = ca.tbs_certificate.subject_public_key_info.to_der().map_err(|e| Error::der("CA key", e))?;
        let ca_spki = spki::SubjectPublicKeyInfoRef::from_der(&ca_spki).map_err(|e| Error::der("CA key", e))?;
        let key_type = KeyType::of_spki(&ca_spki).map_err(|e| refuse(format!("CA key: {e}")))?;
        let name_der = ca.tbs_certificate.subject.to_der().map_err(|e| Error::der("CA subject", e))?;
        let key_bits = ca.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
        let hashes = CertIdHash::ALL
            .into_iter()
            .filter(|h| *h != CertIdHash::Sm3 || key_type == KeyType::Sm2)
            .map(|hash| IssuerHashes { hash, name: hash.digest(&name_der), key: hash.digest(key_bits) })
            .collect();

        // byKey: SHA-1 of the responder's subjectPublicKey BIT STRING contents (RFC 6960 §4.2.1);
        // shorter than byName and what RFC 5019 §2.2.3 recommends.
        let responder_key = responder.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
        let key_hash = OctetString::new(CertIdHash::Sha1.digest(responder_key))
            .map_err(|e| Error::der("responder key hash", e))?;
        let responder_der = responder.to_der().map_err(|e| Error::der("responder certificate", e))?;
        let responder_id = ResponderId::ByKey(key_hash);
        let responder_id_der = responder_id.to_der().map_err(|e| Error::der("responder id", e))?;
        let signature_algorithm_der =
            signer.algorithm().identifier().to_der().map_err(|e| Error::der("signature algorithm", e))?;
        Ok(Self {
            id,
            ca,
            responder,
            responder_der,
            signer,
            signature_algorithm_der,
            signing_time: SigningTime::new(),
            responder_id,
            responder_id_der,
            hashes,
            key_type,
        })
    }

    /// The CA database's id of this issuer.
    #[must_use]
    pub fn id(&self) -> &IssuerId {
        &self.id
    }

    /// The issuing CA's certificate.
    #[must_use]
    pub fn ca_certificate(&self) -> &Certificate {
        &self.ca
    }

    /// The delegated responder's certificate (included in every response).
    #[must_use]
    pub fn responder_certificate(&self) -> &Certificate {
        &self.responder
    }

    /// The delegated responder's certificate as DER.
    #[must_use]
    pub fn responder_certificate_der(&self) -> &[u8] {
        &self.responder_der
    }

    /// The responder's key.
    #[must_use]
    pub fn signer(&self) -> &dyn Signer {
        &*self.signer
    }

    /// The DER AlgorithmIdentifier of the responder key's signatures.
    #[must_use]
    pub fn signature_algorithm_der(&self) -> &[u8] {
        &self.signature_algorithm_der
    }

    /// Feeds one signature's duration into the running estimate behind [`Self::signs_quickly`].
    pub fn record_signing_time(&self, elapsed: Duration) {
        self.signing_time.record(elapsed);
    }

    /// The running average of recent signing times (see [`QUICK_SIGNATURE`]).
    #[must_use]
    pub fn signing_time_estimate(&self) -> Duration {
        self.signing_time.estimate()
    }

    /// Whether recent signatures took at most [`QUICK_SIGNATURE`] on average: a software key,
    /// not a device round-trip. The responder then signs single responses in place rather
    /// than on the blocking pool. Measured, not configured, so that it holds for any backend
    /// and follows a device that slows down.
    #[must_use]
    pub fn signs_quickly(&self) -> bool {
        self.signing_time.estimate() <= QUICK_SIGNATURE
    }

    /// The ResponderID that goes into responses (byKey).
    #[must_use]
    pub fn responder_id(&self) -> &ResponderId {
        &self.responder_id
    }

    /// The ResponderID as DER.
    #[must_use]
    pub fn responder_id_der(&self) -> &[u8] {
        &self.responder_id_der
    }

    /// The hash algorithms requests may name this issuer with.
    pub fn hash_algorithms(&self) -> impl Iterator<Item = CertIdHash> + '_ {
        self.hashes.iter().map(|h| h.hash)
    }

    /// Whether `hash` is one this issuer is named with.
    #[must_use]
    pub fn supports(&self, hash: CertIdHash) -> bool {
        self.hashes.iter().any(|h| h.hash == hash)
    }

    /// Whether a CertID's issuerNameHash and issuerKeyHash under `hash` name this issuer.
    #[must_use]
    pub fn matches(&self, hash: CertIdHash, name_hash: &[u8], key_hash: &[u8]) -> bool {
        self.hashes.iter().any(|h| h.hash == hash && h.name == name_hash && h.key == key_hash)
    }

    /// The CertID of `serial` under `hash`, as we write it into pre-signed responses.
    ///
    /// # Errors
    /// [`Error::NotDelegated`] when `hash` is not one of this issuer's; [`Error::Der`] should a
    /// hash or serial not encode.
    pub fn cert_id(&self, hash: CertIdHash, serial: &Serial) -> Result<CertId, Error> {
        let h = self.hashes.iter().find(|h| h.hash == hash).ok_or_else(|| Error::NotDelegated {
            issuer: self.id.0.clone(),
            subject: self.responder.tbs_certificate.subject.to_string(),
            reason: format!("no {hash} CertID for this issuer"),
        })?;
        // Serial holds 1..=21 minimal content octets, so the INTEGER's length is one octet.
        let mut integer = vec![0x02, u8::try_from(serial.as_bytes().len()).unwrap_or(0)];
        integer.extend_from_slice(serial.as_bytes());
        let serial_number =
            x509_cert::serial_number::SerialNumber::from_der(&integer).map_err(|e| Error::der("serial", e))?;
        Ok(CertId {
            hash_algorithm: hash.identifier(),
            issuer_name_hash: OctetString::new(h.name.clone()).map_err(|e| Error::der("issuer name hash", e))?,
            issuer_key_hash: OctetString::new(h.key.clone()).map_err(|e| Error::der("issuer key hash", e))?,
            serial_number,
        })
    }
}

/// RFC 6960 §4.2.2.2: the responder certificate is issued directly by the CA and carries
/// id-kp-OCSPSigning; RFC 6960 §4.2.2.2.1 and R46: it carries id-pkix-ocsp-nocheck.
fn check_delegation(ca: &Certificate, responder: &Certificate, now: OffsetDateTime) -> Result<(), String> {
    let tbs = &responder.tbs_certificate;
    if tbs.issuer != ca.tbs_certificate.subject {
        return Err(format!("issued by {}, not by the CA {}", tbs.issuer, ca.tbs_certificate.subject));
    }
    let ca_spki = ca.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
    let signature = responder.signature.as_bytes().ok_or("signature BIT STRING has unused bits")?;
    signer_lib::verify::verify_signature(&ca_spki, responder.signature_algorithm.oid, &tbs_der, signature)
        .map_err(|e| format!("not signed by the CA's key: {e}"))?;
    let extensions = tbs.extensions.as_deref().unwrap_or_default();
    let eku = extensions
        .iter()
        .find(|e| e.extn_id == ID_CE_EXT_KEY_USAGE)
        .ok_or("no extendedKeyUsage (id-kp-OCSPSigning is required)")?;
    let eku = ExtendedKeyUsage::from_der(eku.extn_value.as_bytes()).map_err(|e| format!("extendedKeyUsage: {e}"))?;
    if !eku.0.contains(&ID_KP_OCSP_SIGNING) {
        return Err("extendedKeyUsage lacks id-kp-OCSPSigning".into());
    }
    if !extensions.iter().any(|e| e.extn_id == ID_PKIX_OCSP_NOCHECK) {
        return Err("no id-pkix-ocsp-nocheck extension".into());
    }
    let not_before = tbs.validity.not_before.to_unix_duration();
    let not_after = tbs.validity.not_after.to_unix_duration();
    let now_unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    if now_unix < not_before.as_secs() || now_unix > not_after.as_secs() {
        return Err(format!(
            "not valid now ({now}): valid from {} to {}",
            tbs.validity.not_before, tbs.validity.not_after
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_is_quick_only_after_quick_signatures_and_slow_again_after_slow_ones() {
        let time = SigningTime::new();
        assert!(time.estimate() > QUICK_SIGNATURE, "unknown signers start slow");
        for _ in 0..30 {
            time.record(Duration::from_micros(30));
        }
        assert!(time.estimate() <= QUICK_SIGNATURE);
        // One stall counts only up to the cap, and eight quick signatures undo it.
        time.record(Duration::from_secs(5));
        assert!(time.estimate() > QUICK_SIGNATURE);
        for _ in 0..8 {
            time.record(Duration::from_micros(30));
        }
        assert!(time.estimate() <= QUICK_SIGNATURE);
        // A device round-trip of 150 µs every time is never quick.
        for _ in 0..200 {
            time.record(Duration::from_micros(150));
        }
        assert!(time.estimate() > QUICK_SIGNATURE);
    }
}
