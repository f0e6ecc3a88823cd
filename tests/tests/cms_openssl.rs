//! CMS SignedData interop: OpenSSL verifies ours, we verify OpenSSL's, and Python `gmssl`
//! checks our SM2 signatures.

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use signer_lib::algorithm::{DigestAlgorithm, SignatureAlgorithm, VerifyAlgorithm};
use signer_lib::envelope::{self, SignOptions, SignerBinding, SignerEntry};
use signer_lib::key::software::SoftwareKey;
use signer_lib::{Error, Signer, certificate};
use x509_cert::Certificate;

const OPENSSL: &str = "/usr/bin/openssl";
const DAY: Duration = Duration::from_secs(86_400);
const MESSAGE: &[u8] = b"<CEB311Message guid=\"4CDE1CFD\">\xe8\xae\xa2\xe5\x8d\x95 42</CEB311Message>\r\n\x00\xff";

/// 2025-11-27T00:00:00Z: a fixed clock.
fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_201_600)
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    run(dir, OPENSSL, args)
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Identity {
    key: SoftwareKey,
    root: Certificate,
    cert: Certificate,
    chain: Vec<Certificate>,
}

impl Identity {
    fn new(alg: SignatureAlgorithm) -> Self {
        let root_key = SoftwareKey::generate(alg).unwrap();
        let inter_key = SoftwareKey::generate(alg).unwrap();
        let key = SoftwareKey::generate(alg).unwrap();
        let root = certificate::self_signed_ca(&root_key, "CN=CMS Interop Root,C=CN", 30 * DAY).unwrap();
        let inter = certificate::issue_intermediate(
            &root_key,
            &root,
            "CN=CMS Interop CA,C=CN",
            inter_key.public_key_der(),
            20 * DAY,
            None,
        )
        .unwrap();
        let cert = certificate::issue_end_entity(
            &inter_key,
            &inter,
            "CN=Zhang San,O=Example Trading,C=CN",
            key.public_key_der(),
            10 * DAY,
        )
        .unwrap();
        Self { key, root, cert, chain: vec![inter] }
    }

    fn sign(&self, detached: bool, options: Option<SignOptions>) -> Vec<u8> {
        let options = options.unwrap_or_else(|| SignOptions { detached, ..SignOptions::new(signing_time()) });
        let entry = SignerEntry { signer: &self.key, certificate: &self.cert, chain: &self.chain };
        envelope::sign(MESSAGE, &[entry], &options).unwrap()
    }
}

/// The signed attributes (DER SET OF), signature value and message-digest attribute of the
/// first SignerInfo.
struct SignedParts {
    signed_attrs: Vec<u8>,
    signature: Vec<u8>,
    message_digest: Vec<u8>,
}

fn signed_parts(sig: &[u8]) -> SignedParts {
    let content_info = ContentInfo::from_der(sig).unwrap();
    let signed_data = content_info.content.decode_as::<SignedData>().unwrap();
    let info = &signed_data.signer_infos.0.as_slice()[0];
    let attrs = info.signed_attrs.as_ref().unwrap();
    let md = attrs.iter().find(|a| a.oid == envelope::ID_MESSAGE_DIGEST).unwrap();
    let md = der::asn1::OctetString::from_der(&md.values.as_slice()[0].to_der().unwrap()).unwrap();
    SignedParts {
        signed_attrs: attrs.to_der().unwrap(),
        signature: info.signature.as_bytes().to_vec(),
        message_digest: md.as_bytes().to_vec(),
    }
}

/// Writes the message, a tampered copy, the root and our attached/detached signatures.
fn write_signatures(d: &Path, id: &Identity) {
    std::fs::write(d.join("msg.bin"), MESSAGE).unwrap();
    let mut tampered = MESSAGE.to_vec();
    tampered[3] ^= 0x20;
    std::fs::write(d.join("tampered.bin"), &tampered).unwrap();
    std::fs::write(d.join("root.pem"), certificate::to_pem(&id.root).unwrap()).unwrap();
    std::fs::write(d.join("cert.pem"), certificate::to_pem(&id.cert).unwrap()).unwrap();
    std::fs::write(d.join("attached.der"), id.sign(false, None)).unwrap();
    std::fs::write(d.join("detached.der"), id.sign(true, None)).unwrap();
    std::fs::write(d.join("detached.pem"), envelope::to_pem(&id.sign(true, None))).unwrap();
}

fn cms_verify(d: &Path, extra: &[&str]) -> Output {
    openssl(d, &[&["cms", "-verify", "-binary"][..], extra].concat())
}

#[test]
fn openssl_verifies_our_p256_signatures() {
    let id = Identity::new(SignatureAlgorithm::EcdsaP256Sha256);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_signatures(d, &id);

    // Attached, the content comes out unchanged.
    let out = cms_verify(d, &["-noverify", "-inform", "DER", "-in", "attached.der", "-out", "out.bin"]);
    assert!(out.status.success(), "attached: {}", describe(&out));
    assert_eq!(std::fs::read(d.join("out.bin")).unwrap(), MESSAGE);
    // Detached, DER and PEM.
    let detached = ["-noverify", "-inform", "DER", "-content", "msg.bin", "-in", "detached.der", "-out", "/dev/null"];
    let out = cms_verify(d, &detached);
    assert!(out.status.success(), "detached: {}", describe(&out));
    let out = cms_verify(
        d,
        &["-noverify", "-inform", "PEM", "-content", "msg.bin", "-in", "detached.pem", "-out", "/dev/null"],
    );
    assert!(out.status.success(), "detached PEM: {}", describe(&out));
    // With the certificate path too: the chain we included leads to the root.
    let out = cms_verify(
        d,
        &["-CAfile", "root.pem", "-inform", "DER", "-content", "msg.bin", "-in", "detached.der", "-out", "/dev/null"],
    );
    assert!(out.status.success(), "detached with path: {}", describe(&out));
    // A changed message fails.
    let out = cms_verify(
        d,
        &["-noverify", "-inform", "DER", "-content", "tampered.bin", "-in", "detached.der", "-out", "/dev/null"],
    );
    assert!(!out.status.success(), "openssl accepted a tampered message");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CMS_SignerInfo_verify_content"), "{}", describe(&out));

    // OpenSSL sees the four CAdES-BES attributes.
    let out = openssl(d, &["cms", "-cmsout", "-print", "-inform", "DER", "-in", "attached.der"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for attr in ["contentType", "messageDigest", "signingTime", "id-smime-aa-signingCertificateV2"] {
        assert!(text.contains(attr), "{attr} not in\n{text}");
    }
}

/// OpenSSL 3.0 cannot verify (nor make) Ed25519 CMS signatures: `cms -verify` passes the
/// SHA-512 digestAlgorithm to the EdDSA provider, which refuses any digest
/// ("eddsa_digest_signverify_init:invalid digest"; openssl/openssl#11915, #13523). When the
/// installed OpenSSL can, `cms -verify` must accept ours; otherwise OpenSSL checks the parts
/// itself: `dgst -sha512` of the message equals the message-digest attribute, and
/// `pkeyutl -verify -rawin` (pure Ed25519, RFC 8419) accepts the signature over the DER
/// signed attributes, and refuses it over anything else.
#[test]
fn openssl_verifies_our_ed25519_signatures() {
    let id = Identity::new(SignatureAlgorithm::Ed25519);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_signatures(d, &id);

    let attached = cms_verify(d, &["-noverify", "-inform", "DER", "-in", "attached.der", "-out", "/dev/null"]);
    let detached = ["-noverify", "-inform", "DER", "-content", "msg.bin", "-in", "detached.der", "-out", "/dev/null"];
    if attached.status.success() {
        assert!(cms_verify(d, &detached).status.success());
        let tampered = ["-noverify", "-inform", "DER", "-content", "tampered.bin", "-in", "detached.der"];
        assert!(!cms_verify(d, &tampered).status.success(), "openssl accepted a tampered message");
    } else {
        assert!(
            String::from_utf8_lossy(&attached.stderr).contains("eddsa_digest_signverify_init"),
            "not the known OpenSSL 3.0 limitation: {}",
            describe(&attached)
        );
    }

    for file in ["attached.der", "detached.der"] {
        let parts = signed_parts(&std::fs::read(d.join(file)).unwrap());
        std::fs::write(d.join("attrs.der"), &parts.signed_attrs).unwrap();
        std::fs::write(d.join("sig.bin"), &parts.signature).unwrap();
        let out = openssl(d, &["x509", "-in", "cert.pem", "-noout", "-pubkey", "-out", "pub.pem"]);
        assert!(out.status.success(), "{}", describe(&out));

        for (message, matches) in [("msg.bin", true), ("tampered.bin", false)] {
            let out = openssl(d, &["dgst", "-sha512", "-binary", message]);
            assert!(out.status.success(), "{}", describe(&out));
            assert_eq!(out.stdout == parts.message_digest, matches, "{file}: SHA-512 of {message}");
        }
        let pkeyutl = |data: &str| {
            openssl(
                d,
                &["pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", data, "-sigfile", "sig.bin"],
            )
        };
        let out = pkeyutl("attrs.der");
        assert!(
            out.status.success() && out.stdout.starts_with(b"Signature Verified Successfully"),
            "{}",
            describe(&out)
        );
        let mut other = parts.signed_attrs.clone();
        other[0] = 0xa0; // the [0] IMPLICIT form is not what is signed
        std::fs::write(d.join("other.der"), &other).unwrap();
        assert!(!pkeyutl("other.der").status.success());
    }
}

/// OpenSSL 3.0 and SM2 CMS: it does not know the GM/T 0010 content types ("unsupported content
/// type"), and it checks SM2 SignerInfos under the empty distinguishing ID with no option to
/// change that, so signatures under the GM/T 0009 default ID fail there ("verification
/// failure"). With the RFC 5652 OIDs and a key whose ID is empty, OpenSSL accepts our SM2
/// signature: the structure, the SM3 message digest and the signed bytes are what it expects.
#[test]
fn openssl_verifies_our_sm2_signature_made_under_the_empty_distinguishing_id() {
    let key = SoftwareKey::generate(SignatureAlgorithm::Sm2Sm3).unwrap().with_sm2_distid("").unwrap();
    let cert = certificate::self_signed_end_entity(&key, "CN=SM2 Empty ID,C=CN", DAY).unwrap();
    let entry = SignerEntry { signer: &key, certificate: &cert, chain: &[] };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("msg.bin"), MESSAGE).unwrap();
    std::fs::write(d.join("tampered.bin"), b"another message").unwrap();
    for detached in [false, true] {
        let options = SignOptions {
            detached,
            oids: Some(envelope::ContentTypeOids::Rfc5652),
            ..SignOptions::new(signing_time())
        };
        let sig = envelope::sign(MESSAGE, &[entry], &options).unwrap();
        std::fs::write(d.join("sig.der"), &sig).unwrap();
        let out = cms_verify(
            d,
            &["-noverify", "-inform", "DER", "-content", "msg.bin", "-in", "sig.der", "-out", "/dev/null"],
        );
        assert!(out.status.success(), "detached={detached}: {}", describe(&out));
        if detached {
            let out = cms_verify(d, &["-noverify", "-inform", "DER", "-content", "tampered.bin", "-in", "sig.der"]);
            assert!(!out.status.success(), "openssl accepted a tampered message");
        }

        // We verify it when told the ID, and refuse it under the default one.
        let empty_id = signer_lib::verify::VerifyOptions { sm2_distid: b"" };
        let report = envelope::verify_with(&sig, Some(MESSAGE), &empty_id).unwrap();
        assert_eq!(report.signers[0].algorithm, VerifyAlgorithm::Ours(SignatureAlgorithm::Sm2Sm3));
        assert!(matches!(envelope::verify(&sig, Some(MESSAGE)), Err(Error::BadSignature(_))));
    }
}

/// A key and a self-signed certificate made by OpenSSL.
fn openssl_identity(d: &Path, newkey: &[&str], subject: &str) {
    let args = [
        &["req", "-x509", "-nodes", "-days", "2", "-subj", subject, "-keyout", "key.pem", "-out", "cert.pem"][..],
        newkey,
    ]
    .concat();
    let out = openssl(d, &args);
    assert!(out.status.success(), "openssl req: {}", describe(&out));
}

/// `openssl cms -sign` with `cert.pem`/`key.pem` over `msg.bin`; `mode` is `-nodetach` for
/// attached content (OpenSSL 3.0 detaches by default and has no `-detached` option).
fn openssl_sign(d: &Path, mode: Option<&str>, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["cms", "-sign", "-binary", "-outform", "DER", "-signer", "cert.pem", "-inkey", "key.pem"];
    args.extend(mode);
    args.extend_from_slice(&["-in", "msg.bin", "-out", "sig.der"]);
    args.extend_from_slice(extra);
    let out = openssl(d, &args);
    assert!(out.status.success(), "openssl cms -sign: {}", describe(&out));
    std::fs::read(d.join("sig.der")).unwrap()
}

#[test]
fn we_verify_openssl_signatures() {
    // No Ed25519: OpenSSL 3.0 cannot make Ed25519 CMS signatures ("no default digest").
    let keys: [(&[&str], VerifyAlgorithm, DigestAlgorithm); 2] = [
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            VerifyAlgorithm::Ours(SignatureAlgorithm::EcdsaP256Sha256),
            DigestAlgorithm::Sha256,
        ),
        (&["-newkey", "rsa:2048"], VerifyAlgorithm::RsaPkcs1Sha256, DigestAlgorithm::Sha256),
    ];
    for (newkey, algorithm, digest) in keys {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("msg.bin"), MESSAGE).unwrap();
        openssl_identity(d, newkey, "/C=CN/O=Example/CN=OpenSSL Signer");
        let cert = certificate::parse(&std::fs::read(d.join("cert.pem")).unwrap()).unwrap();

        for cades in [false, true] {
            let extra: &[&str] = if cades { &["-cades"] } else { &[] };
            let attached = openssl_sign(d, Some("-nodetach"), extra);
            let report =
                envelope::verify(&attached, None).unwrap_or_else(|e| panic!("{algorithm} attached cades={cades}: {e}"));
            assert_eq!(report.content, MESSAGE);
            let [signer] = report.signers.as_slice() else { panic!("one signer") };
            assert_eq!(signer.algorithm, algorithm);
            assert_eq!(signer.digest, digest);
            assert_eq!(signer.certificate, cert);
            assert_eq!(signer.subject, "CN=OpenSSL Signer,O=Example,C=CN");
            assert!(signer.signing_time.is_some());
            let expected = if cades { SignerBinding::Verified } else { SignerBinding::NotPresent };
            assert_eq!(signer.binding, expected, "{algorithm} cades={cades}");

            let detached = openssl_sign(d, None, extra);
            let report =
                envelope::verify(&detached, Some(MESSAGE)).unwrap_or_else(|e| panic!("{algorithm} detached: {e}"));
            assert!(report.detached);
            let mut tampered = MESSAGE.to_vec();
            tampered[0] ^= 1;
            let err = envelope::verify(&detached, Some(&tampered)).unwrap_err();
            assert!(matches!(err, Error::BadSignature(_)), "{err}");
            assert!(envelope::verify(&detached, None).is_err());
        }
    }
}

#[test]
fn we_verify_openssl_signatures_without_signed_attributes_and_in_pem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("msg.bin"), MESSAGE).unwrap();
    openssl_identity(d, &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "/CN=No Attributes");
    let sig = openssl_sign(d, Some("-nodetach"), &["-noattr"]);
    let report = envelope::verify(&sig, None).unwrap();
    assert_eq!(report.signers[0].binding, SignerBinding::NotPresent);
    assert_eq!(report.signers[0].signing_time, None);

    let out = openssl(
        d,
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-outform",
            "PEM",
            "-signer",
            "cert.pem",
            "-inkey",
            "key.pem",
            "-in",
            "msg.bin",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN CMS-----"));
    envelope::verify(&out.stdout, None).unwrap();
}

/// Our SM2 signature's signed attributes (as the DER SET OF) and r‖s, checked with Python's
/// `gmssl` (pure-Python SM2; Z with the default ID 1234567812345678). A second implementation
/// agreeing on Z, SM3 and the signing equation over exactly the bytes RFC 5652 §5.4 names.
#[test]
fn python_gmssl_verifies_our_sm2_signature() {
    let id = Identity::new(SignatureAlgorithm::Sm2Sm3);
    let sig = id.sign(false, None);
    envelope::verify(&sig, None).unwrap();

    let content_info = ContentInfo::from_der(&sig).unwrap();
    let signed_data = content_info.content.decode_as::<SignedData>().unwrap();
    let info = &signed_data.signer_infos.0.as_slice()[0];
    let signed_attrs = info.signed_attrs.as_ref().unwrap().to_der().unwrap();
    assert_eq!(signed_attrs[0], 0x31, "signed as a SET OF");
    let raw = signer_lib::sm2::der_to_raw(info.signature.as_bytes(), 32).unwrap();
    let point = id.cert.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    assert_eq!((point.len(), point[0]), (65, 0x04));

    let mut tampered = signed_attrs.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(gmssl_verify(&point[1..], &raw, &signed_attrs), "True");
    assert_eq!(gmssl_verify(&point[1..], &raw, &tampered), "False");
}

/// Runs gmssl's `CryptSM2.verify_with_sm3(r‖s hex, data)` and returns what it printed.
fn gmssl_verify(xy: &[u8], raw_signature: &[u8], data: &[u8]) -> String {
    // The public key is set after construction: the constructor's `lstrip("04")` would also
    // eat leading '0'/'4' digits of x.
    const SCRIPT: &str = "
import sys
try:
    from gmssl import sm2
except ImportError as e:
    sys.exit('python3 cannot import gmssl (%s): run `pip install gmssl`' % e)
xy, sig, data = sys.argv[1:4]
c = sm2.CryptSM2(private_key='', public_key='')
c.public_key = xy
print(bool(c.verify_with_sm3(sig, bytes.fromhex(data))))
";
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &hex::encode(xy), &hex::encode(raw_signature), &hex::encode(data)])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install Python 3 and run `pip install gmssl`"));
    assert!(out.status.success(), "gmssl check failed (run `pip install gmssl` if it is missing): {}", describe(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
