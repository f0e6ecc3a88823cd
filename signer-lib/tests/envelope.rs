//! CMS SignedData: sign and verify round trips, tampering, and hostile input.

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode, Encode};
use signer_lib::algorithm::{SignatureAlgorithm, VerifyAlgorithm};
use signer_lib::envelope::ess::SigningCertificateV2;
use signer_lib::envelope::{
    self, ContentTypeOids, GMT_DATA, GMT_SIGNED_DATA, ID_AA_SIGNING_CERTIFICATE_V2, ID_CONTENT_TYPE, ID_DATA,
    ID_MESSAGE_DIGEST, ID_SIGNED_DATA, SignOptions, SignerBinding, SignerEntry,
};
use signer_lib::key::software::SoftwareKey;
use signer_lib::{Error, Signer, certificate};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;

const DAY: Duration = Duration::from_secs(86_400);
const MESSAGE: &[u8] = b"<CEB311Message>\xe4\xb8\xad\xe5\x9b\xbd\xe7\x94\xb5\xe5\xad\x90\xe5\x8f\xa3\xe5\xb2\xb8 order 42</CEB311Message>\r\n";

/// 2025-11-27T00:00:00Z: a fixed clock.
fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_201_600)
}

struct Identity {
    key: SoftwareKey,
    cert: Certificate,
    chain: Vec<Certificate>,
}

impl Identity {
    fn new(alg: SignatureAlgorithm, name: &str) -> Self {
        let root_key = SoftwareKey::generate(alg).unwrap();
        let inter_key = SoftwareKey::generate(alg).unwrap();
        let key = SoftwareKey::generate(alg).unwrap();
        let root = certificate::self_signed_ca(&root_key, &format!("CN={name} Root,C=CN"), 30 * DAY).unwrap();
        let inter = certificate::issue_intermediate(
            &root_key,
            &root,
            &format!("CN={name} CA,C=CN"),
            inter_key.public_key_der(),
            20 * DAY,
            Some(0),
        )
        .unwrap();
        let cert = certificate::issue_end_entity(
            &inter_key,
            &inter,
            &format!("CN={name},O=Example Trading,C=CN"),
            key.public_key_der(),
            10 * DAY,
        )
        .unwrap();
        Self { key, cert, chain: vec![inter, root] }
    }

    fn entry(&self) -> SignerEntry<'_> {
        SignerEntry { signer: &self.key, certificate: &self.cert, chain: &self.chain }
    }

    fn sign(&self, content: &[u8], detached: bool) -> Vec<u8> {
        let options = SignOptions { detached, ..SignOptions::new(signing_time()) };
        envelope::sign(content, &[self.entry()], &options).unwrap()
    }
}

fn decode(der_bytes: &[u8]) -> (ContentInfo, SignedData) {
    let ci = ContentInfo::from_der(der_bytes).unwrap();
    let sd = ci.content.decode_as::<SignedData>().unwrap();
    (ci, sd)
}

fn encode(ci: &ContentInfo, sd: &SignedData) -> Vec<u8> {
    ContentInfo { content_type: ci.content_type, content: Any::encode_from(sd).unwrap() }.to_der().unwrap()
}

/// Changes the signed attributes of the first SignerInfo and signs them again with `key`,
/// as a signer that really produced such attributes would have.
fn resign(der_bytes: &[u8], key: &dyn Signer, change: impl FnOnce(&mut Vec<Attribute>)) -> Vec<u8> {
    let (ci, mut sd) = decode(der_bytes);
    let mut infos = sd.signer_infos.0.into_vec();
    let mut attrs = infos[0].signed_attrs.take().unwrap().into_vec();
    change(&mut attrs);
    let attrs = SetOfVec::try_from(attrs).unwrap();
    infos[0].signature = OctetString::new(key.sign(&attrs.to_der().unwrap()).unwrap()).unwrap();
    infos[0].signed_attrs = Some(attrs);
    sd.signer_infos = infos.try_into().unwrap();
    encode(&ci, &sd)
}

fn one_value(oid: ObjectIdentifier, value: &impl Encode) -> Attribute {
    let value = Any::from_der(&value.to_der().unwrap()).unwrap();
    Attribute { oid, values: SetOfVec::try_from(vec![value]).unwrap() }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).expect("needle in the DER")
}

#[test]
fn signs_and_verifies_attached_and_detached_for_every_algorithm() {
    for alg in SignatureAlgorithm::ALL {
        let id = Identity::new(alg, "Zhang San");
        for detached in [false, true] {
            let sig = id.sign(MESSAGE, detached);
            let report = if detached {
                envelope::verify(&sig, Some(MESSAGE)).unwrap()
            } else {
                envelope::verify(&sig, None).unwrap()
            };
            assert_eq!(report.content, MESSAGE, "{alg}");
            assert_eq!(report.detached, detached);
            let [signer] = report.signers.as_slice() else { panic!("one signer") };
            assert_eq!(signer.algorithm, VerifyAlgorithm::Ours(alg));
            assert_eq!(signer.digest, alg.cms_digest());
            assert_eq!(signer.signing_time, Some(signing_time()));
            assert_eq!(signer.binding, SignerBinding::Verified);
            assert_eq!(signer.subject, "CN=Zhang San,O=Example Trading,C=CN");
            assert_eq!(signer.issuer, "CN=Zhang San CA,C=CN");
            assert_eq!(signer.serial_hex, hex::encode(id.cert.tbs_certificate.serial_number.as_bytes()));
            assert_eq!(signer.certificate, id.cert);

            // PEM works as well as DER.
            let pem = envelope::to_pem(&sig);
            assert!(pem.starts_with("-----BEGIN CMS-----\n"));
            envelope::verify(pem.as_bytes(), detached.then_some(MESSAGE)).unwrap();

            // The certificates travel with the signature.
            let (_, sd) = decode(&sig);
            assert_eq!(sd.certificates.unwrap().0.len(), 3);
        }
    }
}

#[test]
fn uses_the_algorithm_identifiers_of_each_algorithm() {
    let cases = [
        (SignatureAlgorithm::EcdsaP256Sha256, "2.16.840.1.101.3.4.2.1", "1.2.840.10045.4.3.2"),
        (SignatureAlgorithm::Ed25519, "2.16.840.1.101.3.4.2.3", "1.3.101.112"),
        (SignatureAlgorithm::Sm2Sm3, "1.2.156.10197.1.401", "1.2.156.10197.1.501"),
    ];
    for (alg, digest, signature) in cases {
        let sig = Identity::new(alg, "A").sign(MESSAGE, false);
        let (_, sd) = decode(&sig);
        let info = &sd.signer_infos.0.as_slice()[0];
        assert_eq!(info.digest_alg.oid.to_string(), digest);
        assert!(info.digest_alg.parameters.is_none());
        assert_eq!(info.signature_algorithm.oid.to_string(), signature);
        assert!(info.signature_algorithm.parameters.is_none());
        assert_eq!(sd.digest_algorithms.as_slice(), std::slice::from_ref(&info.digest_alg));
        assert!(matches!(info.sid, SignerIdentifier::IssuerAndSerialNumber(_)));
        // content-type, message-digest, signing-time, signing-certificate-v2.
        assert_eq!(info.signed_attrs.as_ref().unwrap().len(), 4);
    }
}

#[test]
fn sm2_uses_the_gmt_0010_content_types_unless_told_otherwise() {
    let id = Identity::new(SignatureAlgorithm::Sm2Sm3, "Li Si");
    let sig = id.sign(MESSAGE, false);
    let (ci, sd) = decode(&sig);
    assert_eq!(ci.content_type, GMT_SIGNED_DATA);
    assert_eq!(sd.encap_content_info.econtent_type, GMT_DATA);
    assert_eq!(envelope::verify(&sig, None).unwrap().content_type_oids, ContentTypeOids::Gmt0010);

    let options = SignOptions { oids: Some(ContentTypeOids::Rfc5652), ..SignOptions::new(signing_time()) };
    let sig = envelope::sign(MESSAGE, &[id.entry()], &options).unwrap();
    let (ci, sd) = decode(&sig);
    assert_eq!(ci.content_type, ID_SIGNED_DATA);
    assert_eq!(sd.encap_content_info.econtent_type, ID_DATA);
    assert_eq!(envelope::verify(&sig, None).unwrap().content_type_oids, ContentTypeOids::Rfc5652);

    let p256 = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "P");
    let (ci, _) = decode(&p256.sign(MESSAGE, false));
    assert_eq!(ci.content_type, ID_SIGNED_DATA);
}

#[test]
fn verifies_two_signers_in_one_signed_data() {
    let a = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "Signer A");
    let b = Identity::new(SignatureAlgorithm::Sm2Sm3, "Signer B");
    for detached in [false, true] {
        let options = SignOptions { detached, ..SignOptions::new(signing_time()) };
        let sig = envelope::sign(MESSAGE, &[a.entry(), b.entry()], &options).unwrap();
        let report = envelope::verify(&sig, Some(MESSAGE)).unwrap();
        assert_eq!(report.content_type_oids, ContentTypeOids::Rfc5652);
        let mut subjects: Vec<_> = report.signers.iter().map(|s| s.subject.as_str()).collect();
        subjects.sort_unstable();
        assert_eq!(subjects, ["CN=Signer A,O=Example Trading,C=CN", "CN=Signer B,O=Example Trading,C=CN"]);
        let (_, sd) = decode(&sig);
        assert_eq!(sd.digest_algorithms.len(), 2);
        assert_eq!(sd.certificates.unwrap().0.len(), 6);
    }
}

#[test]
fn shares_certificates_between_signers_without_duplicates() {
    let a = Identity::new(SignatureAlgorithm::Ed25519, "Twin");
    let sig = envelope::sign(MESSAGE, &[a.entry(), a.entry()], &SignOptions::new(signing_time())).unwrap();
    let (_, sd) = decode(&sig);
    assert_eq!(sd.certificates.unwrap().0.len(), 3);
    assert_eq!(envelope::verify(&sig, None).unwrap().signers.len(), 2);
}

#[test]
fn detects_a_changed_content_byte() {
    for alg in SignatureAlgorithm::ALL {
        let id = Identity::new(alg, "Wang Wu");
        let mut tampered = MESSAGE.to_vec();
        tampered[5] ^= 0x01;

        let detached = id.sign(MESSAGE, true);
        let err = envelope::verify(&detached, Some(&tampered)).unwrap_err();
        assert!(matches!(err, Error::BadSignature(_)), "{alg}: {err}");

        let mut attached = id.sign(MESSAGE, false);
        let at = find(&attached, MESSAGE) + 5;
        attached[at] ^= 0x01;
        let err = envelope::verify(&attached, None).unwrap_err();
        assert!(matches!(err, Error::BadSignature(_)), "{alg}: {err}");
        assert!(err.to_string().contains("message-digest"), "{err}");
    }
}

#[test]
fn detects_a_changed_signing_time() {
    for alg in SignatureAlgorithm::ALL {
        let id = Identity::new(alg, "Zhao Liu");
        let mut sig = id.sign(MESSAGE, false);
        // UTCTime 251127000000Z: make it 251127000001Z.
        let at = find(&sig, b"251127000000Z") + 11;
        sig[at] = b'1';
        let err = envelope::verify(&sig, None).unwrap_err();
        assert!(matches!(err, Error::BadSignature(_)), "{alg}: {err}");
    }
}

#[test]
fn detects_a_changed_signature_byte() {
    for alg in SignatureAlgorithm::ALL {
        let id = Identity::new(alg, "Sun Qi");
        let sig = id.sign(MESSAGE, false);
        let (ci, mut sd) = decode(&sig);
        let mut infos = sd.signer_infos.0.into_vec();
        let mut value = infos[0].signature.as_bytes().to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        infos[0].signature = OctetString::new(value).unwrap();
        sd.signer_infos = infos.try_into().unwrap();
        let err = envelope::verify(&encode(&ci, &sd), None).unwrap_err();
        assert!(matches!(err, Error::BadSignature(_)), "{alg}: {err}");
    }
}

#[test]
fn detects_a_signing_certificate_v2_naming_another_certificate() {
    for alg in SignatureAlgorithm::ALL {
        let id = Identity::new(alg, "Signer");
        let other = Identity::new(alg, "Someone Else");
        let sig = id.sign(MESSAGE, false);
        let forged = resign(&sig, &id.key, |attrs| {
            attrs.retain(|a| a.oid != ID_AA_SIGNING_CERTIFICATE_V2);
            attrs.push(one_value(
                ID_AA_SIGNING_CERTIFICATE_V2,
                &SigningCertificateV2::for_certificate(&other.cert).unwrap(),
            ));
        });
        let err = envelope::verify(&forged, None).unwrap_err();
        assert!(matches!(&err, Error::Cms(m) if m.contains("signer binding is broken")), "{alg}: {err}");

        // Without the attribute the signature verifies, and the report says the binding is absent.
        let unbound = resign(&sig, &id.key, |attrs| attrs.retain(|a| a.oid != ID_AA_SIGNING_CERTIFICATE_V2));
        let report = envelope::verify(&unbound, None).unwrap();
        assert_eq!(report.signers[0].binding, SignerBinding::NotPresent);
    }
}

#[test]
fn requires_content_type_and_message_digest_attributes() {
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "Attr");
    let sig = id.sign(MESSAGE, false);
    for oid in [ID_CONTENT_TYPE, ID_MESSAGE_DIGEST] {
        let stripped = resign(&sig, &id.key, |attrs| attrs.retain(|a| a.oid != oid));
        let err = envelope::verify(&stripped, None).unwrap_err();
        assert!(matches!(&err, Error::Cms(m) if m.contains("missing")), "{err}");
    }
    let wrong_type = resign(&sig, &id.key, |attrs| {
        attrs.retain(|a| a.oid != ID_CONTENT_TYPE);
        attrs.push(one_value(ID_CONTENT_TYPE, &GMT_DATA));
    });
    let err = envelope::verify(&wrong_type, None).unwrap_err();
    assert!(matches!(&err, Error::Cms(m) if m.contains("eContentType")), "{err}");

    let two_values = resign(&sig, &id.key, |attrs| {
        let ct = attrs.iter_mut().find(|a| a.oid == ID_CONTENT_TYPE).unwrap();
        ct.values.insert(Any::from_der(&GMT_DATA.to_der().unwrap()).unwrap()).unwrap();
    });
    assert!(matches!(envelope::verify(&two_values, None), Err(Error::Cms(_))));
}

#[test]
fn verifies_a_signer_info_without_signed_attributes() {
    for alg in SignatureAlgorithm::ALL {
        let id = Identity::new(alg, "Plain");
        let sig = id.sign(MESSAGE, false);
        let (ci, mut sd) = decode(&sig);
        let mut infos = sd.signer_infos.0.into_vec();
        infos[0].signed_attrs = None;
        infos[0].signature = OctetString::new(id.key.sign(MESSAGE).unwrap()).unwrap();
        sd.signer_infos = infos.try_into().unwrap();
        let report = envelope::verify(&encode(&ci, &sd), None).unwrap();
        assert_eq!(report.signers[0].binding, SignerBinding::NotPresent);
        assert_eq!(report.signers[0].signing_time, None);

        let mut tampered = MESSAGE.to_vec();
        tampered[0] ^= 1;
        let (ci, mut sd2) = decode(&encode(&ci, &sd));
        sd2.encap_content_info.econtent = Some(Any::new(der::Tag::OctetString, tampered).unwrap());
        assert!(matches!(envelope::verify(&encode(&ci, &sd2), None), Err(Error::BadSignature(_))));
    }
}

#[test]
fn finds_the_signer_certificate_by_subject_key_identifier() {
    use const_oid::AssociatedOid as _;
    use x509_cert::ext::pkix::SubjectKeyIdentifier;
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "SKI");
    let sig = id.sign(MESSAGE, false);
    let ski = id
        .cert
        .tbs_certificate
        .extensions
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == SubjectKeyIdentifier::OID)
        .map(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).unwrap())
        .unwrap();
    let (ci, mut sd) = decode(&sig);
    let mut infos = sd.signer_infos.0.into_vec();
    infos[0].sid = SignerIdentifier::SubjectKeyIdentifier(ski);
    infos[0].version = cms::content_info::CmsVersion::V3;
    sd.signer_infos = infos.try_into().unwrap();
    let report = envelope::verify(&encode(&ci, &sd), None).unwrap();
    assert_eq!(report.signers[0].certificate, id.cert);
}

#[test]
fn refuses_a_signer_whose_certificate_is_missing() {
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "Gone");
    let (ci, mut sd) = decode(&id.sign(MESSAGE, false));
    sd.certificates = None;
    let err = envelope::verify(&encode(&ci, &sd), None).unwrap_err();
    assert!(matches!(&err, Error::Cms(m) if m.contains("no certificate")), "{err}");
}

#[test]
fn handles_content_present_absent_and_different() {
    let id = Identity::new(SignatureAlgorithm::Ed25519, "Content");
    let attached = id.sign(MESSAGE, false);
    let detached = id.sign(MESSAGE, true);
    assert!(matches!(envelope::verify(&detached, None), Err(Error::Cms(_))));
    envelope::verify(&attached, Some(MESSAGE)).unwrap();
    assert!(matches!(envelope::verify(&attached, Some(b"other")), Err(Error::Cms(_))));
    // Empty content signs and verifies like any other.
    let empty = id.sign(b"", true);
    assert_eq!(envelope::verify(&empty, Some(b"")).unwrap().content, b"");
}

#[test]
fn gives_unsupported_algorithm_for_an_unknown_digest() {
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "Digest");
    let (ci, mut sd) = decode(&id.sign(MESSAGE, false));
    let mut infos = sd.signer_infos.0.into_vec();
    infos[0].digest_alg.oid = ObjectIdentifier::new_unwrap("1.2.840.113549.2.5"); // MD5
    sd.signer_infos = infos.try_into().unwrap();
    let err = envelope::verify(&encode(&ci, &sd), None).unwrap_err();
    assert!(matches!(&err, Error::UnsupportedAlgorithm { oid } if oid == "1.2.840.113549.2.5"), "{err}");
}

#[test]
fn refuses_other_content_types() {
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "Type");
    let sig = id.sign(MESSAGE, false);
    let (ci, mut sd) = decode(&sig);
    let enveloped = ContentInfo { content_type: ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3"), ..ci.clone() };
    assert!(matches!(envelope::verify(&enveloped.to_der().unwrap(), None), Err(Error::Cms(_))));
    sd.encap_content_info.econtent_type = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
    assert!(matches!(envelope::verify(&encode(&ci, &sd), None), Err(Error::Cms(_))));
}

#[test]
fn refuses_to_sign_with_a_key_that_is_not_the_certificates() {
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "Owner");
    let thief = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    let entry = SignerEntry { signer: &thief, certificate: &id.cert, chain: &[] };
    let err = envelope::sign(MESSAGE, &[entry], &SignOptions::new(signing_time())).unwrap_err();
    assert!(matches!(err, Error::KeyCertificateMismatch { .. }), "{err}");
    assert!(matches!(envelope::sign(MESSAGE, &[], &SignOptions::new(signing_time())), Err(Error::Cms(_))));
}

/// R50: the signature is over the DER (sorted) SET OF. A producer that signed its attributes
/// in another order is refused, even though the SignerInfo carries exactly the bytes it signed.
#[test]
fn refuses_attributes_signed_in_non_der_order() {
    // Ed25519 signatures have a fixed length, so bytes can be swapped in place.
    let id = Identity::new(SignatureAlgorithm::Ed25519, "Order");
    let mut sig = id.sign(MESSAGE, false);
    let (_, sd) = decode(&sig);
    let info = &sd.signer_infos.0.as_slice()[0];
    let attrs = info.signed_attrs.as_ref().unwrap();
    let sorted: Vec<Vec<u8>> = attrs.iter().map(|a| a.to_der().unwrap()).collect();
    let sorted_body = sorted.concat();
    let reversed_body: Vec<u8> = sorted.iter().rev().flatten().copied().collect();
    let mut reversed_set = attrs.to_der().unwrap();
    let header = reversed_set.len() - sorted_body.len();
    reversed_set[header..].copy_from_slice(&reversed_body);
    let new_signature = id.key.sign(&reversed_set).unwrap();

    let at = find(&sig, &sorted_body);
    sig[at..at + sorted_body.len()].copy_from_slice(&reversed_body);
    let at = find(&sig, info.signature.as_bytes());
    sig[at..at + 64].copy_from_slice(&new_signature);
    let err = envelope::verify(&sig, None).unwrap_err();
    assert!(matches!(err, Error::BadSignature(_)), "{err}");
}

#[test]
fn never_panics_on_truncated_input() {
    for alg in SignatureAlgorithm::ALL {
        let id = Identity::new(alg, "Truncate");
        let sig = id.sign(MESSAGE, false);
        for len in 0..sig.len() {
            assert!(envelope::verify(&sig[..len], None).is_err(), "{alg}: length {len} accepted");
            assert!(envelope::verify(&sig[..len], Some(MESSAGE)).is_err(), "{alg}: length {len} accepted");
        }
        let pem = envelope::to_pem(&sig);
        // Only the final newline may go.
        for len in 0..pem.trim_end().len() {
            assert!(envelope::verify(&pem.as_bytes()[..len], None).is_err(), "{alg}: PEM length {len} accepted");
        }
    }
}

#[test]
fn never_panics_on_any_single_byte_change() {
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256, "Flip");
    let sig = id.sign(MESSAGE, false);
    for at in 0..sig.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut bad = sig.clone();
            bad[at] ^= mask;
            // Bytes outside what is signed (the certificates' own signatures, the chain) may
            // change without harm; what matters here is that nothing panics.
            let _ = envelope::verify(&bad, Some(MESSAGE));
        }
    }
}

#[test]
fn never_panics_on_random_bytes() {
    // xorshift64*: deterministic, so a failure reproduces.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for round in 0..5_000 {
        let len = usize::try_from(next() % 600).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|_| next().to_be_bytes()[0]).collect();
        // Half the inputs start like a ContentInfo so the parser gets past the first byte.
        if round % 2 == 0 && bytes.len() > 4 {
            bytes[0] = 0x30;
            bytes[1] = 0x82;
        }
        assert!(envelope::verify(&bytes, Some(MESSAGE)).is_err());
    }
    for text in [
        "",
        "-----BEGIN CMS-----",
        "-----BEGIN CMS-----\n\n-----END CMS-----\n",
        "-----BEGIN PKCS7-----\nMAA=\n-----END PKCS7-----",
    ] {
        assert!(envelope::verify(text.as_bytes(), None).is_err());
    }
}
