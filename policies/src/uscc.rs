//! The unified social credit code (统一社会信用代码) of GB 32100-2015: the 18-character
//! identifier every enterprise, institution and agency in China registers under.
//!
//! ```text
//! position  1      2        3-8                   9-17                     18
//!           authority  category  division (GB/T 2260)  organisation code (GB 11714)  check
//! ```
//! Every character is from the 31-character alphabet `0-9 A-H J-N P-R T U W-Y` (I, O, S, V
//! and Z are left out because they are easily misread); positions 3-8 are digits. The check
//! character is `31 − (Σ value(cᵢ)·wᵢ mod 31)`, with 31 written as `0`, where the weights
//! wᵢ = 3^(i−1) mod 31 are `1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28`.

use crate::Error;
use crate::error::UsccDefect;

/// The code's alphabet; a character's value is its index.
const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The weights of positions 1-17 (3^(i−1) mod 31).
const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// The length of a code.
pub const USCC_LEN: usize = 18;

/// Checks a unified social credit code against GB 32100-2015: 18 characters from the
/// code's alphabet (upper case only), digits in positions 3-8, and the check character.
///
/// # Errors
/// [`Error::InvalidUscc`] saying which rule the code breaks.
pub fn validate_uscc(code: &str) -> Result<(), Error> {
    let defect = |reason| Error::InvalidUscc { code: code.to_owned(), reason };
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != USCC_LEN {
        return Err(defect(UsccDefect::Length { found: chars.len() }));
    }
    let mut sum = 0u32;
    for (i, &c) in chars.iter().enumerate() {
        let value = value_of(c).ok_or_else(|| defect(UsccDefect::Character { character: c, position: i + 1 }))?;
        if (2..8).contains(&i) && !c.is_ascii_digit() {
            return Err(defect(UsccDefect::DivisionCode { character: c, position: i + 1 }));
        }
        if let Some(weight) = WEIGHTS.get(i) {
            sum += value * weight;
        }
    }
    let expected = check_character(sum);
    match chars.last() {
        Some(&found) if found == expected => Ok(()),
        Some(&found) => Err(defect(UsccDefect::CheckCharacter { found, expected })),
        None => Err(defect(UsccDefect::Length { found: 0 })),
    }
}

/// The value of a character of the alphabet, or `None`.
fn value_of(c: char) -> Option<u32> {
    let byte = u8::try_from(c).ok()?;
    let index = ALPHABET.iter().position(|&a| a == byte)?;
    u32::try_from(index).ok()
}

/// The check character for a weighted sum.
fn check_character(sum: u32) -> char {
    let check = (31 - sum % 31) % 31;
    // `check` is in 0..31 and ALPHABET has 31 entries, so the index is in range.
    ALPHABET.get(check as usize).map_or('?', |&b| char::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defect(code: &str) -> UsccDefect {
        match validate_uscc(code) {
            Err(Error::InvalidUscc { reason, .. }) => reason,
            other => panic!("{code}: expected InvalidUscc, got {other:?}"),
        }
    }

    #[test]
    fn accepts_real_shaped_codes() {
        // 91350100M000100Y43 is the example GB 32100-2015 guides commonly cite.
        for code in ["91350100M000100Y43", "91110000600037341L", "91440300708461136T"] {
            validate_uscc(code).unwrap_or_else(|e| panic!("{code}: {e}"));
        }
    }

    #[test]
    fn accepts_a_code_whose_check_value_is_31() {
        // Find a 17-character body whose weighted sum is ≡ 0 (mod 31): check "0".
        let body = "9135010000000000";
        let sum: u32 = body.chars().zip(WEIGHTS).map(|(c, w)| value_of(c).unwrap_or(0) * w).sum();
        let last = (0..31u32).find(|v| (sum + v * WEIGHTS[16]).is_multiple_of(31)).unwrap();
        let code = format!("{body}{}{}", char::from(ALPHABET[last as usize]), '0');
        validate_uscc(&code).unwrap();
    }

    #[test]
    fn rejects_a_wrong_check_character() {
        assert_eq!(defect("91350100M000100Y44"), UsccDefect::CheckCharacter { found: '4', expected: '3' });
        assert_eq!(defect("91110000600037341K"), UsccDefect::CheckCharacter { found: 'K', expected: 'L' });
    }

    #[test]
    fn rejects_a_transposition() {
        assert!(matches!(defect("91350100M001000Y43"), UsccDefect::CheckCharacter { .. }));
    }

    #[test]
    fn rejects_letters_the_alphabet_leaves_out() {
        for bad in ['I', 'O', 'Z', 'S', 'V'] {
            let code = format!("91350100M00010{bad}Y43");
            assert_eq!(defect(&code), UsccDefect::Character { character: bad, position: 15 }, "{code}");
        }
    }

    #[test]
    fn rejects_lower_case_and_non_ascii() {
        assert_eq!(defect("91350100m000100Y43"), UsccDefect::Character { character: 'm', position: 9 });
        assert_eq!(defect("91350100Ｍ000100Y43"), UsccDefect::Character { character: 'Ｍ', position: 9 });
    }

    #[test]
    fn rejects_letters_in_the_division_code() {
        assert_eq!(defect("9135A100M000100Y43"), UsccDefect::DivisionCode { character: 'A', position: 5 });
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert_eq!(defect(""), UsccDefect::Length { found: 0 });
        assert_eq!(defect("91350100M000100Y4"), UsccDefect::Length { found: 17 });
        assert_eq!(defect("91350100M000100Y433"), UsccDefect::Length { found: 19 });
        // 15-digit business registration numbers (pre-2015) are not unified codes.
        assert_eq!(defect("110108012345678"), UsccDefect::Length { found: 15 });
    }

    #[test]
    fn weights_are_powers_of_three_mod_31() {
        let mut w = 1u32;
        for expected in WEIGHTS {
            assert_eq!(w, expected);
            w = w * 3 % 31;
        }
    }
}
