//! Signed tree heads as C2SP checkpoints (<https://c2sp.org/tlog-checkpoint>), which are
//! signed notes (<https://c2sp.org/signed-note>):
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//!
//! — <key name> <base64(4-byte key id || signature)>
//! ```
//!
//! The key name is the log's origin. The signature is over the note text (the three lines with
//! their newlines) and is made by the log's [`Signer`], whatever backend holds the key:
//!
//! | key | signature | key id = SHA-256(…)\[..4\] |
//! |---|---|---|
//! | Ed25519 | RFC 8032, 64 bytes (signed-note type 0x01) | `name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key` |
//! | ECDSA P-256 | SHA-256, DER `Ecdsa-Sig-Value` | `name ‖ 0x0A ‖ 0xFF ‖ "eport-p256" ‖ SPKI DER` |
//! | SM2 | SM3 with Z over the default ID `1234567812345678`, DER `SEQUENCE { r, s }` | `name ‖ 0x0A ‖ 0xFF ‖ "eport-sm2" ‖ SPKI DER` |
//!
//! Signed-note defines only Ed25519 for general use; for P-256 and SM2 we use its extension type
//! byte 0xFF followed by our own identifier, as the spec recommends for unassigned types.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use der::Decode;
use sha2::Digest as _;

use super::merkle::Hash;
use crate::algorithm::KeyType;
use crate::{Error, Signer};

/// The largest note we parse; a checkpoint with a few cosignatures is a few hundred bytes.
const MAX_NOTE_BYTES: usize = 64 * 1024;
/// The most signature lines we look at (signed-note asks verifiers to accept at least 16).
const MAX_SIGNATURES: usize = 64;

/// A verified signed tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    note: String,
}

impl Checkpoint {
    /// The log's origin line (also the key name).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash at that size.
    #[must_use]
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The whole signed note, as published and stored.
    #[must_use]
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Signs a checkpoint for `origin` at `size` with root `root`. Signing may block (a device
    /// round-trip); async callers use `spawn_blocking`. The signature is checked before it is
    /// returned, so a faulty device cannot publish a bad head.
    ///
    /// # Errors
    /// [`Error::Audit`] for an origin that cannot be a key name; the signer's errors;
    /// [`Error::UnsupportedAlgorithm`] for an RSA key.
    pub fn sign(origin: &str, size: u64, root: &Hash, signer: &dyn Signer) -> Result<Self, Error> {
        check_origin(origin)?;
        let text = format!("{origin}\n{size}\n{}\n", B64.encode(root));
        let id = key_id(origin, signer.public_key_der())?;
        let signature = signer.sign(text.as_bytes())?;
        let mut blob = id.to_vec();
        blob.extend_from_slice(&signature);
        let note = format!("{text}\n\u{2014} {origin} {}\n", B64.encode(blob));
        Self::verify(&note, signer.public_key_der())
    }

    /// Parses a checkpoint and verifies it against the log's public key (SPKI DER): one of its
    /// signatures must be by that key under the origin as key name; signatures by other keys
    /// (witnesses) are ignored, and a failing signature by the log's key rejects the note.
    ///
    /// # Errors
    /// [`Error::Malformed`] for text that is not a checkpoint; [`Error::BadProof`] when no
    /// signature by the log's key verifies.
    pub fn verify(note: &str, public_key: &[u8]) -> Result<Self, Error> {
        let malformed = |reason: &str| Error::Malformed { what: "checkpoint", reason: reason.to_owned() };
        if note.len() > MAX_NOTE_BYTES {
            return Err(malformed("longer than 64 KiB"));
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("contains a control character"));
        }
        if !note.ends_with('\n') {
            return Err(malformed("does not end with a newline"));
        }
        let split = note.rfind("\n\n").ok_or_else(|| malformed("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);

        let mut lines = text.split_terminator('\n');
        let origin = lines.next().filter(|l| !l.is_empty()).ok_or_else(|| malformed("no origin line"))?;
        let size_line = lines.next().ok_or_else(|| malformed("no tree size line"))?;
        let root_line = lines.next().ok_or_else(|| malformed("no root hash line"))?;
        if lines.any(str::is_empty) {
            return Err(malformed("an empty line in the note text"));
        }
        let size = parse_size(size_line).ok_or_else(|| malformed("the tree size is not a canonical decimal"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed("the root hash is not 32 bytes of base64"))?;

        let want_id = key_id(origin, public_key)?;
        let oid = signature_oid(public_key)?;
        let mut verified = false;
        for (n, line) in signatures.split_terminator('\n').enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(malformed("too many signatures"));
            }
            let rest =
                line.strip_prefix("\u{2014} ").ok_or_else(|| malformed("a signature line without the em dash"))?;
            let (name, b64) = rest.split_once(' ').ok_or_else(|| malformed("a signature line without a signature"))?;
            if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
                return Err(malformed("a bad key name"));
            }
            let blob = B64.decode(b64).map_err(|_| malformed("a signature that is not base64"))?;
            if blob.len() < 5 {
                return Err(malformed("a signature shorter than its key id"));
            }
            if name != origin || blob[..4] != want_id {
                continue; // someone else's key (a witness): ignored, as signed-note requires
            }
            crate::verify::verify_signature(public_key, oid, text.as_bytes(), &blob[4..]).map_err(|e| {
                Error::BadProof(format!("the checkpoint signature by the log's key does not verify: {e}"))
            })?;
            verified = true;
        }
        if !verified {
            return Err(Error::BadProof(format!(
                "the checkpoint has no signature by the log's key (name {origin:?}, id {})",
                hex::encode(want_id)
            )));
        }
        Ok(Self { origin: origin.to_owned(), size, root, note: note.to_owned() })
    }
}

/// Checks that an origin can serve as a signed-note key name: non-empty, at most 255 bytes, no
/// spaces, plus signs or control characters.
///
/// # Errors
/// [`Error::Audit`] when it cannot.
pub fn check_origin(origin: &str) -> Result<(), Error> {
    if origin.is_empty()
        || origin.len() > 255
        || origin.contains('+')
        || origin.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::Audit(format!(
            "origin {origin:?} must be 1–255 bytes without spaces, '+' or control characters (e.g. example.com/audit)"
        )));
    }
    Ok(())
}

/// The signed-note key id of the log key `spki_der` under key name `name` (see the module
/// documentation for the rule per algorithm).
///
/// # Errors
/// [`Error::Malformed`] for a bad SPKI; [`Error::UnsupportedAlgorithm`] for RSA or other keys.
pub fn key_id(name: &str, spki_der: &[u8]) -> Result<[u8; 4], Error> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| Error::der("public key", e))?;
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a]);
    match KeyType::of_spki(&spki)? {
        KeyType::Ed25519 => {
            h.update([0x01]);
            h.update(spki.subject_public_key.raw_bytes());
        }
        KeyType::P256 => {
            h.update([0xff]);
            h.update(b"eport-p256");
            h.update(spki_der);
        }
        KeyType::Sm2 => {
            h.update([0xff]);
            h.update(b"eport-sm2");
            h.update(spki_der);
        }
        KeyType::Rsa => {
            return Err(Error::UnsupportedAlgorithm { oid: "RSA keys cannot sign audit tree heads".into() });
        }
    }
    let digest = h.finalize();
    Ok([digest[0], digest[1], digest[2], digest[3]])
}

/// The signature algorithm OID a tree-head key signs with.
fn signature_oid(spki_der: &[u8]) -> Result<der::asn1::ObjectIdentifier, Error> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| Error::der("public key", e))?;
    KeyType::of_spki(&spki)?
        .signature_algorithm()
        .map(crate::SignatureAlgorithm::oid)
        .ok_or_else(|| Error::UnsupportedAlgorithm { oid: "RSA keys cannot sign audit tree heads".into() })
}

/// A tree size line: ASCII decimal, no sign, no leading zeros except "0" itself, at most
/// `i64::MAX` (what the stores can hold).
fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse::<u64>().ok().filter(|&n| i64::try_from(n).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SignatureAlgorithm;
    use crate::key::software::SoftwareKey;

    const ROOT: Hash = [7; 32];

    #[test]
    fn signs_and_verifies_with_every_algorithm() {
        for alg in SignatureAlgorithm::ALL {
            let key = SoftwareKey::generate(alg).unwrap();
            let cp = Checkpoint::sign("example.com/audit", 42, &ROOT, &key).unwrap();
            assert!(cp.note().starts_with(
                "example.com/audit\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} example.com/audit "
            ));
            let back = Checkpoint::verify(cp.note(), key.public_key_der()).unwrap();
            assert_eq!((back.size(), back.root(), back.origin()), (42, &ROOT, "example.com/audit"));
        }
    }

    #[test]
    fn ed25519_key_id_follows_signed_note() {
        let key = SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap();
        let spki = spki::SubjectPublicKeyInfoRef::from_der(key.public_key_der()).unwrap();
        let mut h = sha2::Sha256::new();
        h.update(b"example.com/audit\n\x01");
        h.update(spki.subject_public_key.raw_bytes());
        assert_eq!(key_id("example.com/audit", key.public_key_der()).unwrap(), h.finalize()[..4]);
    }

    #[test]
    fn rejects_a_checkpoint_signed_by_another_key() {
        let key = SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap();
        let other = SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap();
        let cp = Checkpoint::sign("example.com/audit", 1, &ROOT, &other).unwrap();
        assert!(matches!(Checkpoint::verify(cp.note(), key.public_key_der()), Err(Error::BadProof(_))));
    }

    #[test]
    fn rejects_an_altered_checkpoint() {
        let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let cp = Checkpoint::sign("example.com/audit", 10, &ROOT, &key).unwrap();
        let altered = cp.note().replacen("\n10\n", "\n11\n", 1);
        assert!(matches!(Checkpoint::verify(&altered, key.public_key_der()), Err(Error::BadProof(_))));
    }

    #[test]
    fn ignores_witness_signatures_but_needs_the_logs() {
        let key = SoftwareKey::generate(SignatureAlgorithm::Sm2Sm3).unwrap();
        let cp = Checkpoint::sign("example.com/audit", 3, &ROOT, &key).unwrap();
        let with_witness = format!("{}\u{2014} witness.example AAAAAAAAAAA=\n", cp.note());
        assert!(Checkpoint::verify(&with_witness, key.public_key_der()).is_ok());
        let only_witness = with_witness.replace(cp.note().rsplit_once("\n\n").unwrap().1, "");
        assert!(Checkpoint::verify(&only_witness, key.public_key_der()).is_err());
    }

    #[test]
    fn rejects_malformed_notes() {
        let key = SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap();
        let good = Checkpoint::sign("example.com/audit", 5, &ROOT, &key).unwrap();
        let pk = key.public_key_der();
        for bad in [
            "",
            "example.com/audit\n5\n",
            &good.note().replacen("\n5\n", "\n05\n", 1),
            &good.note().replacen("\n5\n", "\n-5\n", 1),
            &good.note().replacen('\u{2014}', "-", 1),
            good.note().trim_end(),
            &good.note().replacen("BwcH", "Bwc", 1),
            &good.note().replacen("audit\n", "audit\r\n", 1),
        ] {
            assert!(Checkpoint::verify(bad, pk).is_err(), "accepted {bad:?}");
        }
        assert!(check_origin("has space").is_err());
        assert!(check_origin("a+b").is_err());
        assert!(check_origin("").is_err());
    }
}
