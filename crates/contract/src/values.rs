//! Checks and normalisations of single values, shared by the JSON Lines and Parquet readers
//! so that both formats accept and store exactly the same things.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime};

use crate::diag::BadReason;

/// Why one value (and so its record) breaks the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: BadReason,
    pub detail: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, reason: BadReason, detail: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            reason,
            detail: detail.into(),
        }
    }
}

/// Shortens a value for an error message.
pub fn excerpt(s: &str) -> String {
    const MAX: usize = 60;
    if s.len() <= MAX {
        format!("{s:?}")
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}…", &s[..end])
    }
}

/// Parses an RFC 3339 timestamp with an offset into UTC microseconds since the epoch.
pub fn parse_timestamp(field: &str, s: &str) -> Result<i64, Problem> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.timestamp_micros()),
        Err(_) => {
            let no_offset = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
                || NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok();
            let detail = if no_offset {
                format!(
                    "{} has no UTC offset (RFC 3339 needs `Z` or `+hh:mm`)",
                    excerpt(s)
                )
            } else {
                format!("{} is not an RFC 3339 timestamp", excerpt(s))
            };
            Err(Problem::new(field, BadReason::BadTimestamp, detail))
        }
    }
}

/// Text formatted into a fixed buffer on the stack (no allocation per value); writing past
/// its end is an error.
pub struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        StackText {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> StackText<N> {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> std::fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Whether `b` is an IPv4 address in dotted-quad form, exactly the strings
/// `str::parse::<Ipv4Addr>` accepts (four decimal octets up to 255, no leading zeros, no
/// sign or space), which are also its canonical form. One pass over the bytes: addresses
/// are checked on every row of every file, and the standard parser's general machinery
/// cost about 1% of an `analyze` run.
pub fn is_dotted_quad(b: &[u8]) -> bool {
    if b.len() < 7 || b.len() > 15 {
        return false;
    }
    let (mut octets, mut value, mut digits, mut first) = (0, 0u32, 0, 0u8);
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if digits == 0 {
                    first = c;
                }
                digits += 1;
                value = value * 10 + u32::from(c - b'0');
                if digits > 3 || value > 255 || (first == b'0' && digits > 1) {
                    return false;
                }
            }
            b'.' if digits > 0 && octets < 3 => {
                octets += 1;
                (value, digits) = (0, 0);
            }
            _ => return false,
        }
    }
    octets == 3 && digits > 0
}

/// Checks an IPv4/IPv6 address and returns its canonical text form.
pub fn canonical_ip<'a>(field: &str, s: &'a str) -> Result<Cow<'a, str>, Problem> {
    // Dotted-quad IPv4 that parses is already canonical (leading zeros are rejected).
    if is_dotted_quad(s.as_bytes()) {
        return Ok(Cow::Borrowed(s));
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => {
            let ip = ip.to_canonical();
            // Formatted on the stack first: most addresses are canonical already, and
            // allocate nothing then. (45 bytes is the longest IPv6 text form.)
            let mut buf = StackText::<48>::default();
            if write!(buf, "{ip}").is_ok() && buf.as_str() == s {
                Ok(Cow::Borrowed(s))
            } else {
                Ok(Cow::Owned(ip.to_string()))
            }
        }
        Err(_) => Err(Problem::new(
            field,
            BadReason::BadAddress,
            format!("{} is not an IPv4 or IPv6 address", excerpt(s)),
        )),
    }
}

/// Checks an ISO 3166-1 alpha-2 code; returns it upper-case.
pub fn country<'a>(field: &str, s: &'a str) -> Result<Cow<'a, str>, Problem> {
    let b = s.as_bytes();
    if b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic) {
        if b.iter().all(u8::is_ascii_uppercase) {
            Ok(Cow::Borrowed(s))
        } else {
            Ok(Cow::Owned(s.to_ascii_uppercase()))
        }
    } else {
        Err(Problem::new(
            field,
            BadReason::BadValue,
            format!("{} is not a two-letter ISO 3166-1 country code", excerpt(s)),
        ))
    }
}

/// Checks that `s` is one of `allowed` (case-insensitively); returns the canonical word.
pub fn one_of(
    field: &str,
    s: &str,
    allowed: &'static [&'static str],
) -> Result<&'static str, Problem> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(s))
        .copied()
        .ok_or_else(|| {
            Problem::new(
                field,
                BadReason::BadValue,
                format!("{} is not one of {}", excerpt(s), allowed.join(", ")),
            )
        })
}

/// Checks an unsigned integer against the column's maximum.
pub fn unsigned(field: &str, v: u64, max: u64) -> Result<u64, Problem> {
    if v <= max {
        Ok(v)
    } else {
        Err(Problem::new(
            field,
            BadReason::BadValue,
            format!("{v} is larger than the maximum {max}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quads_are_exactly_what_the_standard_parser_accepts() {
        let mut cases: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4",
            "10.0.0.1",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.00",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            " 1.2.3.4",
            "+1.2.3.4",
            "1.2.3.-4",
            "1.2.3.4a",
            "999.1.1.1",
            "1.2.3.1000",
            "::1",
            "::ffff:1.2.3.4",
            "",
            "....",
            "1.2.3.4/24",
            "१.२.३.४",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every string of up to 8 characters over a small alphabet around the edge cases,
        // plus random longer ones.
        let alphabet = [b'0', b'1', b'2', b'5', b'9', b'.'];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for len in 7..=8 {
            for code in 0..alphabet.len().pow(len as u32) {
                let mut c = code;
                let s: String = (0..len)
                    .map(|_| {
                        let ch = alphabet[c % alphabet.len()] as char;
                        c /= alphabet.len();
                        ch
                    })
                    .collect();
                cases.push(s);
            }
        }
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let octet = |k: u64| match k % 7 {
                0 => "0".to_string(),
                1 => format!("0{}", k % 100),
                2 => format!("{}", 250 + k % 10),
                _ => format!("{}", k % 300),
            };
            cases.push(format!(
                "{}.{}.{}.{}",
                octet(x),
                octet(x >> 9),
                octet(x >> 18),
                octet(x >> 27)
            ));
        }
        let mut accepted = 0;
        for s in &cases {
            let std_ok = s.parse::<std::net::Ipv4Addr>().is_ok();
            assert_eq!(is_dotted_quad(s.as_bytes()), std_ok, "{s:?}");
            accepted += usize::from(std_ok);
        }
        assert!(accepted > 10_000, "only {accepted} valid cases");
    }

    #[test]
    fn timestamps_need_an_offset() {
        assert_eq!(
            parse_timestamp("ts", "2026-02-03T14:05:09.120Z").unwrap(),
            1_770_127_509_120_000
        );
        assert_eq!(
            parse_timestamp("ts", "2026-02-03T15:05:09.120+01:00").unwrap(),
            1_770_127_509_120_000
        );
        let p = parse_timestamp("ts", "2026-02-03T14:05:09").unwrap_err();
        assert_eq!(p.reason, BadReason::BadTimestamp);
        assert!(p.detail.contains("no UTC offset"), "{}", p.detail);
        let p = parse_timestamp("ts", "yesterday").unwrap_err();
        assert!(p.detail.contains("not an RFC 3339"), "{}", p.detail);
    }

    #[test]
    fn addresses_are_canonicalised() {
        assert_eq!(canonical_ip("ip", "203.0.113.7").unwrap(), "203.0.113.7");
        assert_eq!(
            canonical_ip("ip", "2001:DB8:0:0::1").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            canonical_ip("ip", "::ffff:198.51.100.2").unwrap(),
            "198.51.100.2"
        );
        assert_eq!(
            canonical_ip("ip", "300.1.1.1").unwrap_err().reason,
            BadReason::BadAddress
        );
        // A canonical IPv6 address is borrowed, not copied; the longest form still fits.
        let long = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
        assert!(matches!(
            canonical_ip("ip", "2001:db8::1"),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(
            canonical_ip("ip", long).unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }

    #[test]
    fn stack_text_refuses_to_overflow() {
        let mut t = StackText::<4>::default();
        assert!(write!(t, "abcd").is_ok());
        assert_eq!(t.as_str(), "abcd");
        assert!(write!(t, "e").is_err());
        assert_eq!(
            t.as_str(),
            "abcd",
            "a refused write leaves the text as it was"
        );
    }

    #[test]
    fn countries_and_words() {
        assert_eq!(country("c", "us").unwrap(), "US");
        assert!(country("c", "USA").is_err());
        assert_eq!(
            one_of("v", "EDU", crate::schema::VERIFICATIONS).unwrap(),
            "edu"
        );
        assert!(one_of("v", "gold", crate::schema::VERIFICATIONS).is_err());
    }
}
