//! Certificate serial numbers: random, positive, 16 octets (R45, CA/B BR §7.1).

use rand_core::{OsRng, RngCore};
use x509_cert::serial_number::SerialNumber;

/// The length of our serial numbers, in octets.
pub const SERIAL_LEN: usize = 16;

/// A fresh serial number: 16 octets from the operating system's CSPRNG with the top bit
/// cleared (so the INTEGER is positive and encodes in exactly 16 octets, no 0x00 pad) and
/// the next bit set (so it is never zero and never shorter). That leaves 126 random bits,
/// well over the 64 that CA/B BR §7.1 asks for; a collision among 2³² certificates has a
/// probability below 2⁻⁶⁰.
///
/// The caller still records every serial and refuses a repeat (the database's unique key);
/// randomness makes that a never-taken path, not an unchecked one.
///
/// # Panics
/// If the operating system's random generator fails ([`OsRng`] panics then): a CA must not
/// issue without it.
#[must_use]
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; SERIAL_LEN];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    // Invariant: 16 octets, first octet in 0x40..=0x7f: a positive INTEGER of 16 content
    // octets, within SerialNumber's 20-octet limit, so `new` cannot fail.
    SerialNumber::new(&bytes).expect("a 16-octet positive serial is always valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_16_positive_octets_and_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let serial = random_serial();
            let bytes = serial.as_bytes();
            assert_eq!(bytes.len(), SERIAL_LEN);
            assert_eq!(bytes[0] & 0xc0, 0x40, "positive, second bit set");
            assert!(seen.insert(bytes.to_vec()), "repeated serial");
        }
    }

    #[test]
    fn serial_bits_are_not_stuck() {
        // Every bit below the two fixed ones takes both values within 1000 draws
        // (the chance that a fair bit does not is 2⁻⁹⁹⁹ per bit).
        let (mut ones, mut zeros) = ([0u8; SERIAL_LEN], [0u8; SERIAL_LEN]);
        for _ in 0..1000 {
            let serial = random_serial();
            for (i, b) in serial.as_bytes().iter().enumerate() {
                ones[i] |= b;
                zeros[i] |= !b;
            }
        }
        assert_eq!(ones[0] & 0x3f, 0x3f);
        assert_eq!(zeros[0] & 0x3f, 0x3f);
        assert!(ones[1..].iter().chain(&zeros[1..]).all(|&b| b == 0xff));
    }
}
