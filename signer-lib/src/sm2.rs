//! SM2 specifics (GM/T 0003, GM/T 0009): distinguishing IDs, the Z value, and the two
//! signature encodings in use — DER `SEQUENCE { r, s }` (X.509, CMS) and raw 64-byte r‖s
//! (HSMs, SKF blobs, e-port XML).

use der::asn1::UintRef;
use der::{Decode, Encode, Sequence};
use sm3::Digest as _;

use crate::Error;

/// The default signer ID of GM/T 0009 §10, used unless a profile or the caller says otherwise.
pub const DEFAULT_DISTID: &str = "1234567812345678";

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3); GM/T 0009
/// uses the same structure for SM2.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Sequence)]
struct EcSignature<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Converts a raw `r ‖ s` signature (two big-endian halves of equal length) to DER.
/// Leading zero bytes are stripped and a 0x00 is prepended where the high bit is set.
///
/// # Errors
/// [`Error::Malformed`] when the input is empty or of odd length.
pub fn raw_to_der(raw: &[u8]) -> Result<Vec<u8>, Error> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(Error::Malformed { what: "raw r‖s signature", reason: format!("length {}", raw.len()) });
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let sig = EcSignature {
        r: UintRef::new(r).map_err(|e| Error::der("raw r‖s signature", e))?,
        s: UintRef::new(s).map_err(|e| Error::der("raw r‖s signature", e))?,
    };
    sig.to_der().map_err(|e| Error::der("raw r‖s signature", e))
}

/// Converts a DER `SEQUENCE { r, s }` to raw `r ‖ s` with each half left-padded to
/// `field_len` bytes (32 for P-256 and SM2).
///
/// # Errors
/// [`Error::Malformed`] when the DER is invalid or an integer is longer than `field_len`.
pub fn der_to_raw(der_sig: &[u8], field_len: usize) -> Result<Vec<u8>, Error> {
    let sig = EcSignature::from_der(der_sig).map_err(|e| Error::der("DER signature", e))?;
    let mut out = vec![0u8; field_len * 2];
    for (i, int) in [sig.r, sig.s].iter().enumerate() {
        let bytes = int.as_bytes();
        if bytes.len() > field_len {
            return Err(Error::Malformed {
                what: "DER signature",
                reason: format!("integer of {} bytes for a {field_len}-byte field", bytes.len()),
            });
        }
        let end = (i + 1) * field_len;
        out[end - bytes.len()..end].copy_from_slice(bytes);
    }
    Ok(out)
}

/// Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A) (GM/T 0003.2 §5.5) for the
/// uncompressed SEC1 public key `point` (0x04 ‖ x ‖ y).
///
/// Written here rather than taken from the `sm2` crate, which keeps it private, because
/// other implementations (and the e-port's card clients) are checked against it.
///
/// # Errors
/// [`Error::InvalidPublicKey`] for a point that is not 65 bytes uncompressed, or an ID of
/// 8192 bytes or more (ENTL is 16 bits).
pub fn z_value(distid: &[u8], point: &[u8]) -> Result<[u8; 32], Error> {
    if point.len() != 65 || point[0] != 0x04 {
        return Err(Error::InvalidPublicKey("SM2 public key must be 65-byte uncompressed".into()));
    }
    let entl = u16::try_from(distid.len() * 8)
        .map_err(|_| Error::InvalidPublicKey(format!("SM2 ID of {} bytes is too long", distid.len())))?;
    let mut h = sm3::Sm3::new();
    h.update(entl.to_be_bytes());
    h.update(distid);
    h.update(CURVE_A);
    h.update(CURVE_B);
    h.update(GX);
    h.update(GY);
    h.update(&point[1..]);
    Ok(h.finalize().into())
}

// The SM2 recommended curve parameters (GM/T 0003.5 §2).
const CURVE_A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const CURVE_B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
const GX: [u8; 32] = hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
const GY: [u8; 32] = hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not hex"),
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// Builds an `sm2` crate verifying key from an uncompressed point and a distinguishing ID.
///
/// # Errors
/// [`Error::InvalidPublicKey`] for a point off the curve or the point at infinity, or an ID
/// that is not UTF-8 (the `sm2` crate takes `&str`).
pub fn verifying_key(distid: &[u8], point: &[u8]) -> Result<::sm2::dsa::VerifyingKey, Error> {
    let id = std::str::from_utf8(distid).map_err(|_| Error::InvalidPublicKey("SM2 ID must be UTF-8".into()))?;
    ::sm2::dsa::VerifyingKey::from_sec1_bytes(id, point)
        .map_err(|_| Error::InvalidPublicKey("not a point on the SM2 curve".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::sm2::elliptic_curve::ff::PrimeField;
    use ::sm2::elliptic_curve::ops::Reduce;
    use ::sm2::elliptic_curve::point::AffineCoordinates;
    use ::sm2::elliptic_curve::sec1::ToEncodedPoint;
    use ::sm2::{FieldBytes, ProjectivePoint, Scalar};
    use signature::Verifier;

    fn scalar(hex_str: &str) -> Scalar {
        let bytes: [u8; 32] = hex::decode(hex_str).unwrap().try_into().unwrap();
        Option::from(Scalar::from_repr(FieldBytes::from(bytes))).unwrap()
    }

    /// The GM/T 0003.5 annex A computation with a fixed k; the `sm2` crate only signs with
    /// RFC 6979 nonces, so the equations of GM/T 0003.2 §6.1 are applied here directly.
    fn sign_with_k(d: &Scalar, e: &[u8; 32], k: &Scalar) -> (Scalar, Scalar) {
        let e = <Scalar as Reduce<::sm2::U256>>::reduce_bytes(FieldBytes::from_slice(e));
        let point = (ProjectivePoint::GENERATOR * k).to_affine();
        let x1 = <Scalar as Reduce<::sm2::U256>>::reduce_bytes(&point.x());
        let r = e + x1;
        let s = Option::<Scalar>::from((*d + Scalar::ONE).invert()).unwrap() * (*k - r * d);
        (r, s)
    }

    #[test]
    fn reproduces_the_gmt_0003_5_annex_a_signature() {
        let d = scalar("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8");
        let k = scalar("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21");
        let public = (ProjectivePoint::GENERATOR * d).to_affine().to_encoded_point(false);
        assert_eq!(
            hex::encode_upper(&public.as_bytes()[1..]),
            "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020\
             CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
        );
        let z = z_value(DEFAULT_DISTID.as_bytes(), public.as_bytes()).unwrap();
        assert_eq!(hex::encode(z), "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3");
        let mut h = sm3::Sm3::new();
        h.update(z);
        h.update(b"message digest");
        let e: [u8; 32] = h.finalize().into();
        assert_eq!(hex::encode(e), "f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640");
        let (r, s) = sign_with_k(&d, &e, &k);
        assert_eq!(hex::encode_upper(r.to_repr()), "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3");
        assert_eq!(hex::encode_upper(s.to_repr()), "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA");

        // And the crate's verifier accepts it, but not under the empty ID.
        let mut raw = r.to_repr().to_vec();
        raw.extend_from_slice(&s.to_repr());
        let sig = ::sm2::dsa::Signature::from_slice(&raw).unwrap();
        let vk = verifying_key(DEFAULT_DISTID.as_bytes(), public.as_bytes()).unwrap();
        vk.verify(b"message digest", &sig).unwrap();
        let vk_empty = verifying_key(b"", public.as_bytes()).unwrap();
        assert!(vk_empty.verify(b"message digest", &sig).is_err());
    }

    #[test]
    fn verifies_the_non_default_id_vector() {
        let point = hex::decode(
            "0408D77AE04C01CC4C1104360DD8AF6B6F7DF334283D7C1A6AFD5652407B87BEE5\
             014E2A57C36C150D16324DC664E31E6432359609C4E79847A5B161C8C7364C8A",
        )
        .unwrap();
        let raw = hex::decode(
            "d1dcccedd9fb785e0f67c16b7c52901625c0b69de9bca2144acc7be713cad2fc\
             f7d1eae6e3a157b36c65f672f738ca8b46298bf149a6510072c431b49cd88b1c",
        )
        .unwrap();
        let sig = ::sm2::dsa::Signature::from_slice(&raw).unwrap();
        let vk = verifying_key(b"example@rustcrypto.org", &point).unwrap();
        vk.verify(b"testing", &sig).unwrap();
        assert!(vk.verify(b"testinG", &sig).is_err());
        let vk_default = verifying_key(DEFAULT_DISTID.as_bytes(), &point).unwrap();
        assert!(vk_default.verify(b"testing", &sig).is_err());
    }

    #[test]
    fn der_and_raw_conversions_handle_leading_zeros_and_high_bits() {
        // r has a leading zero byte, s has its high bit set.
        let mut raw = vec![0u8; 64];
        raw[1] = 0x01;
        raw[31] = 0x7f;
        raw[32] = 0x80;
        raw[63] = 0x01;
        let der_sig = raw_to_der(&raw).unwrap();
        // r: INTEGER of 31 bytes (leading zero stripped), s: 33 bytes (0x00 prepended).
        assert_eq!(der_sig[2..4], [0x02, 31]);
        assert_eq!(der_sig[4 + 31..4 + 31 + 3], [0x02, 33, 0x00]);
        assert_eq!(der_to_raw(&der_sig, 32).unwrap(), raw);

        let tiny = raw_to_der(&[0, 0, 0, 5, 0, 0, 0, 9]).unwrap();
        assert_eq!(tiny, [0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x09]);
        assert_eq!(der_to_raw(&tiny, 4).unwrap(), [0, 0, 0, 5, 0, 0, 0, 9]);
    }

    #[test]
    fn rejects_malformed_signature_encodings() {
        assert!(raw_to_der(&[]).is_err());
        assert!(raw_to_der(&[1, 2, 3]).is_err());
        assert!(der_to_raw(&[0x30, 0x03, 0x02, 0x01], 32).is_err());
        let long = raw_to_der(&[0xff; 80]).unwrap();
        assert!(der_to_raw(&long, 32).is_err());
    }
}
