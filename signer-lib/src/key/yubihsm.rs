//! YubiHSM 2: asymmetric keys that live on the device, reached through `yubihsm-connector`
//! over HTTP (or, in tests, the `yubihsm` crate's MockHsm).
//!
//! The YubiHSM 2 signs ECDSA over P-256 (we hash with SHA-256 here and send the digest) and
//! Ed25519 (the device hashes). It has no SM2. The public key is read from the device once,
//! when the key is opened, and kept as a DER SubjectPublicKeyInfo.
//!
//! Sessions: [`YubiHsmKey::open`] keeps the authentication key (derived from the password, and
//! zeroised on drop by the `yubihsm` crate) so that the client can re-authenticate when the
//! device closes an idle session (it does so after 30 seconds without a command).

use std::fmt;

use ::yubihsm::{Capability, Client, Connector, Credentials, Domain, HttpConfig, asymmetric, object};
use sha2::Digest as _;
use spki::EncodePublicKey as _;

use crate::{Error, SignatureAlgorithm, Signer};

/// The port `yubihsm-connector` listens on unless told otherwise.
const DEFAULT_CONNECTOR_PORT: u16 = 12345;

/// An asymmetric key on a YubiHSM 2.
pub struct YubiHsmKey {
    signer: DeviceSigner,
    key_id: object::Id,
    spki: Vec<u8>,
    /// Where the key lives, for messages ("YubiHSM 2 at http://127.0.0.1:12345").
    place: String,
}

/// The `yubihsm` crate's signer for the key's algorithm; both hold a clone of the client.
enum DeviceSigner {
    P256(::yubihsm::ecdsa::Signer<p256::NistP256>),
    Ed25519(::yubihsm::ed25519::Signer),
}

impl YubiHsmKey {
    /// Opens a session over the `yubihsm-connector` at `connector_url`
    /// (`http://host[:port]`, port 12345 when absent), authenticating with authentication key
    /// `auth_key_id` and `password`, and uses asymmetric key `key_id`. The caller reads the
    /// password from wherever secrets come from (an environment variable); it is not kept,
    /// only the authentication key derived from it (see the module documentation).
    ///
    /// # Errors
    /// [`Error::YubiHsm`] for a malformed URL, an unreachable connector or a refused
    /// password (the message never contains the password); otherwise as [`Self::from_client`].
    pub fn open(connector_url: &str, auth_key_id: u16, password: &str, key_id: u16) -> Result<Self, Error> {
        let config = parse_connector_url(connector_url)?;
        let place = format!("YubiHSM 2 at {config}");
        let credentials = Credentials::from_password(auth_key_id, password.as_bytes());
        // `reconnect = true` keeps the credentials for re-authenticating after the device
        // closes an idle session; a long-running signer needs that.
        let client = Client::open(Connector::http(&config), credentials, true).map_err(|e| {
            let cause = match e.kind() {
                // The crate reports a refused or timed-out connection as a bare "I/O error";
                // connect once more ourselves to say why.
                ::yubihsm::client::ErrorKind::ProtocolError | ::yubihsm::client::ErrorKind::ConnectorError => {
                    unreachable_cause(&config).unwrap_or_else(|| describe(&e))
                }
                _ => describe(&e),
            };
            Error::YubiHsm(format!(
                "cannot open a session with the {place} using authentication key {auth_key_id}: {cause}"
            ))
        })?;
        Self::with_place(client, key_id, place)
    }

    /// Uses asymmetric key `key_id` through an already-open client (tests pass a MockHsm
    /// client). The key must allow signing (capability `sign-ecdsa` or `sign-eddsa`).
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] when there is no asymmetric key with that id;
    /// [`Error::UnsupportedAlgorithm`] for a key that is neither P-256 nor Ed25519;
    /// [`Error::YubiHsm`] when the key may not sign or the device fails.
    pub fn from_client(client: Client, key_id: u16) -> Result<Self, Error> {
        Self::with_place(client, key_id, "YubiHSM 2".to_owned())
    }

    /// Generates an asymmetric signing key with id `key_id`, `label` (at most 40 bytes) and
    /// domain 1, allowed only to sign, and returns it. P-256 and Ed25519 only.
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for SM2 (the YubiHSM 2 has no SM2);
    /// [`Error::YubiHsm`] for a label over 40 bytes, an id already in use, or a device
    /// failure; otherwise as [`Self::from_client`].
    pub fn generate(client: Client, key_id: u16, label: &str, algorithm: SignatureAlgorithm) -> Result<Self, Error> {
        let (device_algorithm, capability) = match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => (asymmetric::Algorithm::EcP256, Capability::SIGN_ECDSA),
            SignatureAlgorithm::Ed25519 => (asymmetric::Algorithm::Ed25519, Capability::SIGN_EDDSA),
            other => {
                return Err(Error::UnsupportedAlgorithm {
                    oid: format!("{} ({other}) on a YubiHSM 2, which supports P-256 and Ed25519", other.oid()),
                });
            }
        };
        // The device would refuse an id in use too, but this says so plainly (and the MockHsm
        // panics instead).
        if client.get_object_info(key_id, object::Type::AsymmetricKey).is_ok() {
            return Err(Error::YubiHsm(format!("an asymmetric key with id {} already exists", id_text(key_id))));
        }
        let object_label = object::Label::from_bytes(label.as_bytes())
            .map_err(|e| Error::YubiHsm(format!("invalid key label {label:?}: {e}")))?;
        client.generate_asymmetric_key(key_id, object_label, Domain::DOM1, capability, device_algorithm).map_err(
            |e| {
                Error::YubiHsm(format!(
                    "cannot generate {algorithm} key {} ({label:?}): {}",
                    id_text(key_id),
                    describe(&e)
                ))
            },
        )?;
        Self::from_client(client, key_id)
    }

    /// The key's object id on the device.
    #[must_use]
    pub fn key_id(&self) -> u16 {
        self.key_id
    }

    fn with_place(client: Client, key_id: u16, place: String) -> Result<Self, Error> {
        let info = client.get_object_info(key_id, object::Type::AsymmetricKey).map_err(|e| {
            if e.device_error() == Some(::yubihsm::device::ErrorKind::ObjectNotFound) {
                Error::KeyNotFound { what: "asymmetric key", name: id_text(key_id), place: place.clone() }
            } else {
                Error::YubiHsm(format!(
                    "cannot read asymmetric key {} on the {place}: {}",
                    id_text(key_id),
                    describe(&e)
                ))
            }
        })?;
        let may_sign = |capability: Capability| {
            if info.capabilities.contains(capability) {
                Ok(())
            } else {
                Err(Error::YubiHsm(format!(
                    "asymmetric key {} on the {place} lacks the {capability} capability (it has {})",
                    id_text(key_id),
                    info.capabilities
                )))
            }
        };
        let device_error = |e: signature::Error| {
            Error::YubiHsm(format!(
                "cannot read the public key of {} on the {place}: {}",
                id_text(key_id),
                describe(&e)
            ))
        };
        let (signer, spki) = match info.algorithm.asymmetric() {
            Some(asymmetric::Algorithm::EcP256) => {
                may_sign(Capability::SIGN_ECDSA)?;
                let signer =
                    ::yubihsm::ecdsa::Signer::<p256::NistP256>::create(client, key_id).map_err(device_error)?;
                let verifying_key: &p256::ecdsa::VerifyingKey = signer.as_ref();
                let spki = verifying_key.to_public_key_der();
                (DeviceSigner::P256(signer), spki)
            }
            Some(asymmetric::Algorithm::Ed25519) => {
                may_sign(Capability::SIGN_EDDSA)?;
                let signer = ::yubihsm::ed25519::Signer::create(client, key_id).map_err(device_error)?;
                let spki = ed25519_dalek::VerifyingKey::from_bytes(signer.public_key().as_bytes())
                    .map_err(|e| {
                        Error::InvalidPublicKey(format!("Ed25519 key {} on the {place}: {e}", id_text(key_id)))
                    })?
                    .to_public_key_der();
                (DeviceSigner::Ed25519(signer), spki)
            }
            _ => {
                return Err(Error::UnsupportedAlgorithm {
                    oid: format!(
                        "{:?} (YubiHSM 2 key {}; only P-256 and Ed25519 keys are supported)",
                        info.algorithm,
                        id_text(key_id)
                    ),
                });
            }
        };
        let spki = spki.map_err(|e| Error::der("public key", e))?.into_vec();
        Ok(Self { signer, key_id, spki, place })
    }
}

/// Why the connector cannot be reached, if it cannot: the I/O error of a plain TCP connect to
/// it (within the connector timeout). `None` when it can be reached after all.
fn unreachable_cause(config: &HttpConfig) -> Option<String> {
    use std::net::{TcpStream, ToSocketAddrs as _};
    let target = format!("{}:{}", config.addr, config.port);
    let addrs = match target.to_socket_addrs() {
        Ok(addrs) => addrs.collect::<Vec<_>>(),
        Err(e) => return Some(format!("cannot resolve {}: {e}", config.addr)),
    };
    let timeout = std::time::Duration::from_millis(config.timeout_ms);
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(_) => return None,
            Err(e) => last = Some(format!("yubihsm-connector not reachable at {addr}: {e}")),
        }
    }
    Some(last.unwrap_or_else(|| format!("{} resolves to no address", config.addr)))
}

/// An error and its sources as one line. The `yubihsm` crate nests its errors several deep
/// and some levels print only their kind ("I/O error"), so the cause ("Connection refused")
/// is only found by walking the chain; levels that merely repeat their source are dropped.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut level = Some(error);
    while let Some(e) = level {
        let text = e.to_string();
        let own = match e.source() {
            Some(source) => text.strip_suffix(&format!(": {source}")).map_or_else(|| text.clone(), str::to_owned),
            None => text,
        };
        if parts.last() != Some(&own) {
            parts.push(own);
        }
        level = e.source();
    }
    parts.join(": ")
}

/// A key id as the YubiHSM tools print it, with the decimal beside it.
fn id_text(key_id: u16) -> String {
    format!("0x{key_id:04x} ({key_id})")
}

/// Parses `http://host[:port][/]` into the connector configuration; IPv6 hosts are written in
/// brackets (`http://[::1]:12345`). The `yubihsm` crate speaks plain HTTP only, so `https`
/// is refused rather than silently downgraded.
///
/// # Errors
/// [`Error::YubiHsm`] naming the URL and what is wrong with it.
pub fn parse_connector_url(url: &str) -> Result<HttpConfig, Error> {
    let bad = |reason: &str| Error::YubiHsm(format!("invalid connector URL {url:?}: {reason}"));
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            bad("the yubihsm-connector client speaks plain HTTP only; use http:// (e.g. over a local TLS tunnel)")
        } else {
            bad("expected http://host[:port]")
        });
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(bad("expected http://host[:port] without a path, query or user"));
    }
    let (host, port) = if authority.starts_with('[') {
        // IPv6 literal: "[addr]" or "[addr]:port"; the brackets stay, as the crate formats "{addr}:{port}".
        let Some(end) = authority.find(']') else {
            return Err(bad("unterminated IPv6 address"));
        };
        let (host, after) = authority.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(bad("expected :port after the IPv6 address")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("no host"));
    }
    let port = match port {
        None => DEFAULT_CONNECTOR_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| bad("port is not a number in 1..=65535"))?,
    };
    Ok(HttpConfig { addr: host.to_owned(), port, ..HttpConfig::default() })
}

impl fmt::Debug for YubiHsmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YubiHsmKey")
            .field("place", &self.place)
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Signer for YubiHsmKey {
    fn algorithm(&self) -> SignatureAlgorithm {
        match self.signer {
            DeviceSigner::P256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            DeviceSigner::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = |e: signature::Error| {
            Error::YubiHsm(format!(
                "signing with key {} on the {} failed: {}",
                id_text(self.key_id),
                self.place,
                describe(&e)
            ))
        };
        match &self.signer {
            DeviceSigner::P256(signer) => {
                // The device signs a digest; the crate turns its DER into a fixed-size signature.
                let sig: p256::ecdsa::Signature =
                    signature::DigestSigner::try_sign_digest(signer, sha2::Sha256::new_with_prefix(message))
                        .map_err(failed)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            DeviceSigner::Ed25519(signer) => {
                let sig: ed25519_dalek::Signature = signature::Signer::try_sign(signer, message).map_err(failed)?;
                Ok(sig.to_bytes().to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verify_signature;

    fn mock_client() -> Client {
        Client::open(Connector::mockhsm(), Credentials::default(), true).unwrap()
    }

    #[test]
    fn generates_signs_and_verifies_p256_and_ed25519() {
        let client = mock_client();
        for (id, alg) in [(100, SignatureAlgorithm::EcdsaP256Sha256), (101, SignatureAlgorithm::Ed25519)] {
            let key = YubiHsmKey::generate(client.clone(), id, "eport-test", alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            assert_eq!(key.key_id(), id);
            assert!(format!("{key:?}").starts_with("YubiHsmKey { place: \"YubiHSM 2\", key_id: "), "{key:?}");
            let sig = key.sign(b"declaration").unwrap();
            verify_signature(key.public_key_der(), alg.oid(), b"declaration", &sig).unwrap();
            assert!(verify_signature(key.public_key_der(), alg.oid(), b"declaratioN", &sig).is_err());

            // Opening the same id again reads the same public key from the device.
            let again = YubiHsmKey::from_client(client.clone(), id).unwrap();
            assert_eq!(again.public_key_der(), key.public_key_der());
        }
    }

    #[test]
    fn signs_a_certification_request_that_verifies() {
        for alg in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::Ed25519] {
            let key = YubiHsmKey::generate(mock_client(), 7, "csr", alg).unwrap();
            let req = crate::csr::build(&key, "CN=HSM,O=Example,C=CN").unwrap();
            let pem = crate::csr::to_pem(&req).unwrap();
            let parsed = crate::csr::parse_and_verify(pem.as_bytes()).unwrap();
            assert_eq!(parsed.info.subject.to_string(), "CN=HSM,O=Example,C=CN");
        }
    }

    #[test]
    fn reports_a_missing_key_id() {
        let err = YubiHsmKey::from_client(mock_client(), 0x1234).unwrap_err();
        assert!(matches!(err, Error::KeyNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("0x1234"), "{err}");
    }

    #[test]
    fn refuses_to_generate_sm2() {
        let err = YubiHsmKey::generate(mock_client(), 5, "sm2", SignatureAlgorithm::Sm2Sm3).unwrap_err();
        assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{err:?}");
    }

    #[test]
    fn refuses_to_generate_over_an_existing_id() {
        let client = mock_client();
        let first = YubiHsmKey::generate(client.clone(), 8, "first", SignatureAlgorithm::Ed25519).unwrap();
        let err = YubiHsmKey::generate(client.clone(), 8, "second", SignatureAlgorithm::EcdsaP256Sha256).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(YubiHsmKey::from_client(client, 8).unwrap().public_key_der(), first.public_key_der());
    }

    #[test]
    fn refuses_a_label_over_40_bytes() {
        let err = YubiHsmKey::generate(mock_client(), 6, &"x".repeat(41), SignatureAlgorithm::Ed25519).unwrap_err();
        assert!(matches!(err, Error::YubiHsm(_)), "{err:?}");
    }

    #[test]
    fn refuses_a_key_that_may_not_sign() {
        let client = mock_client();
        client
            .generate_asymmetric_key(
                9,
                "derive-only".into(),
                Domain::DOM1,
                Capability::DERIVE_ECDH,
                asymmetric::Algorithm::EcP256,
            )
            .unwrap();
        let err = YubiHsmKey::from_client(client, 9).unwrap_err();
        assert!(err.to_string().contains("sign-ecdsa"), "{err}");
    }

    #[test]
    fn refuses_unsupported_curves() {
        let client = mock_client();
        client
            .generate_asymmetric_key(
                10,
                "k256".into(),
                Domain::DOM1,
                Capability::SIGN_ECDSA,
                asymmetric::Algorithm::EcK256,
            )
            .unwrap();
        let err = YubiHsmKey::from_client(client, 10).unwrap_err();
        assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{err:?}");
    }

    #[test]
    fn unreachable_connector_is_a_clear_error_without_the_password() {
        let err = YubiHsmKey::open("http://127.0.0.1:1", 1, "sekrit-password", 100).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::YubiHsm(_)), "{err:?}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(text.contains("refused"), "the cause is reported: {text}");
        assert!(!text.contains("sekrit"), "{text}");
        assert!(!format!("{err:?}").contains("sekrit"));
    }

    #[test]
    fn something_that_is_not_a_connector_is_an_error_not_a_panic() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            // Answer every request the client makes (it may retry) with an HTTP error.
            for stream in listener.incoming().take(4) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let err = YubiHsmKey::open(&format!("http://127.0.0.1:{port}"), 1, "sekrit-password", 100).unwrap_err();
        assert!(matches!(err, Error::YubiHsm(_)), "{err:?}");
        assert!(!err.to_string().contains("sekrit"), "{err}");
        drop(server);
    }

    #[test]
    fn parses_connector_urls() {
        let c = parse_connector_url("http://127.0.0.1:12345").unwrap();
        assert_eq!((c.addr.as_str(), c.port), ("127.0.0.1", 12345));
        let c = parse_connector_url("http://hsm.internal/").unwrap();
        assert_eq!((c.addr.as_str(), c.port), ("hsm.internal", 12345));
        let c = parse_connector_url("http://[::1]:8080").unwrap();
        assert_eq!((c.addr.as_str(), c.port), ("[::1]", 8080));
        for bad in [
            "https://127.0.0.1:12345",
            "127.0.0.1:12345",
            "http://",
            "http://h:0",
            "http://h:x",
            "http://h/api",
            "http://[::1",
        ] {
            assert!(matches!(parse_connector_url(bad), Err(Error::YubiHsm(_))), "{bad}");
        }
    }
}
