//! Korean mobile phone numbers as academies type them, normalised to one canonical form.
//!
//! Sheets carry the same number as `010-1234-5678`, `01012345678`, `010 1234 5678`,
//! `+82 10-1234-5678`, `(010)1234.5678`, or as a number cell `1012345678` that lost its leading 0.
//! All of those become `010-1234-5678`, so the duplicate key of a student does not depend on how a
//! number was typed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Mobile prefixes in use: 010 today, 011/016/017/018/019 from before the 2004 unification (some
/// families still have them).
const PREFIXES: [&str; 6] = ["010", "011", "016", "017", "018", "019"];

/// Longest digit string looked at; anything longer is not a phone number.
const MAX_DIGITS: usize = 15;

/// Why a text is not a Korean mobile number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error(
        "phone number contains a character other than digits, spaces, '-', '.', '(', ')' or a leading '+'"
    )]
    Character,
    #[error("phone number has a country code other than +82")]
    Foreign,
    #[error("not a Korean mobile number (010-1234-5678, or 10 digits for 011/016/017/018/019)")]
    Shape,
}

/// A Korean mobile number in canonical form: `010-1234-5678` (3-4-4), or `011-123-4567` (3-3-4)
/// for the old 10-digit numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    /// Parses a number as typed in a sheet or a form.
    pub fn parse(s: &str) -> Result<Self, PhoneError> {
        let mut digits = String::with_capacity(16);
        let mut plus = false;
        for c in s.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                // Full-width digits from Korean IMEs.
                '０'..='９' => digits.push(char::from(b'0' + (c as u32 - '０' as u32) as u8)),
                '+' if digits.is_empty() && !plus => plus = true,
                ' ' | '\t' | '\u{a0}' | '\u{3000}' | '-' | '.' | '(' | ')' | '/' => {}
                // Dashes that word processors substitute for '-'.
                '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{ff0d}' => {}
                _ => return Err(PhoneError::Character),
            }
            if digits.len() > MAX_DIGITS {
                return Err(PhoneError::Shape);
            }
        }
        if digits.is_empty() {
            return Err(if plus {
                PhoneError::Shape
            } else {
                PhoneError::Empty
            });
        }
        let national = if plus || (digits.starts_with("82") && digits.len() >= 11) {
            let rest = digits.strip_prefix("82").ok_or(PhoneError::Foreign)?;
            // "+82 (0)10 …" keeps the trunk 0 some people write anyway.
            let rest = rest.strip_prefix('0').unwrap_or(rest);
            format!("0{rest}")
        } else if digits.starts_with('1') {
            // A number cell drops the leading 0: 1012345678 is 010-1234-5678.
            format!("0{digits}")
        } else {
            digits
        };
        Self::from_national(&national)
    }

    /// Parses a number cell: an integer-valued float or int such as `1012345678`.
    pub fn from_number(n: f64) -> Result<Self, PhoneError> {
        if !n.is_finite() || n < 0.0 || n.fract() != 0.0 || n >= 1e15 {
            return Err(PhoneError::Shape);
        }
        // Exact: integer-valued and below 2^53.
        Self::parse(&format!("{}", n as u64))
    }

    fn from_national(d: &str) -> Result<Self, PhoneError> {
        let prefix = d.get(..3).ok_or(PhoneError::Shape)?;
        if !PREFIXES.contains(&prefix) {
            return Err(PhoneError::Shape);
        }
        let formatted = match (prefix, d.len()) {
            (_, 11) => format!("{}-{}-{}", &d[..3], &d[3..7], &d[7..]),
            ("010", _) => return Err(PhoneError::Shape),
            (_, 10) => format!("{}-{}-{}", &d[..3], &d[3..6], &d[6..]),
            _ => return Err(PhoneError::Shape),
        };
        Ok(Self(formatted))
    }

    /// The canonical form, e.g. `010-1234-5678`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits alone, e.g. `01012345678`.
    pub fn digits(&self) -> String {
        self.0.chars().filter(char::is_ascii_digit).collect()
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Phone {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, PhoneError> {
        Self::parse(&s)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        Phone::parse(s)
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
            .0
    }

    #[test]
    fn accepted_spellings_normalise() {
        for s in [
            "010-1234-5678",
            "01012345678",
            "010 1234 5678",
            "010.1234.5678",
            "(010)1234-5678",
            "+82 10-1234-5678",
            "+82-010-1234-5678",
            "+82 (0)10 1234 5678",
            "821012345678",
            "8201012345678",
            "1012345678",
            "10-1234-5678",
            " ０１０－１２３４－５６７８ ",
            "010\u{2013}1234\u{2013}5678",
        ] {
            assert_eq!(ok(s), "010-1234-5678", "{s}");
        }
        assert_eq!(ok("011-123-4567"), "011-123-4567");
        assert_eq!(ok("0111234567"), "011-123-4567");
        assert_eq!(ok("111234567"), "011-123-4567");
        assert_eq!(ok("016-1234-5678"), "016-1234-5678");
        assert_eq!(ok("+82 19 123 4567"), "019-123-4567");
    }

    #[test]
    fn refused_spellings() {
        let cases = [
            ("", PhoneError::Empty),
            ("   ", PhoneError::Empty),
            ("+", PhoneError::Shape),
            ("010-1234-567", PhoneError::Shape),
            ("010-123-4567", PhoneError::Shape),
            ("010-1234-56789", PhoneError::Shape),
            ("02-123-4567", PhoneError::Shape),
            ("031-123-4567", PhoneError::Shape),
            ("070-1234-5678", PhoneError::Shape),
            ("012-1234-5678", PhoneError::Shape),
            ("+1 650 253 0000", PhoneError::Foreign),
            ("010-1234-abcd", PhoneError::Character),
            ("010+1234", PhoneError::Character),
            ("없음", PhoneError::Character),
            ("1234567890123456789", PhoneError::Shape),
        ];
        for (s, e) in cases {
            assert_eq!(Phone::parse(s), Err(e), "{s:?}");
        }
    }

    #[test]
    fn number_cells() {
        assert_eq!(
            Phone::from_number(1012345678.0).map(String::from),
            Ok("010-1234-5678".into())
        );
        assert_eq!(Phone::from_number(1_012_345_678.5), Err(PhoneError::Shape));
        assert_eq!(Phone::from_number(-1012345678.0), Err(PhoneError::Shape));
        assert_eq!(Phone::from_number(f64::NAN), Err(PhoneError::Shape));
        assert_eq!(Phone::from_number(1e300), Err(PhoneError::Shape));
    }

    #[test]
    fn digits_and_serde() {
        let p = Phone::parse("010 9876 5432").expect("valid");
        assert_eq!(p.digits(), "01098765432");
        let json = serde_json::to_string(&p).expect("serialises");
        assert_eq!(json, "\"010-9876-5432\"");
        let back: Phone = serde_json::from_str("\"+821098765432\"").expect("deserialises");
        assert_eq!(back, p);
    }
}
