//! The `Range` request header (RFC 9110 §14) for media files: what native players and
//! seeking send (`bytes=0-`, `bytes=1000-1999`, `bytes=-500`).
//!
//! One range is served as `206 Partial Content`; several ranges (multipart/byteranges, which no
//! player sends) are answered with the whole file, as the RFC allows; a range that is malformed or
//! lies past the end is `416 Range Not Satisfiable`. Another unit than `bytes` is ignored.

use std::ops::Range;

/// What to answer a request for an object of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// 200 with the whole object.
    Full,
    /// 206 with these bytes (`start..end`, end exclusive, never empty).
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Longest `Range` header looked at; anything longer is not one byte range.
const MAX_HEADER: usize = 200;

/// Decides the answer for a `Range` header value (`None`: no header).
pub fn parse(header: Option<&[u8]>, size: u64) -> ByteRange {
    let Some(raw) = header else {
        return ByteRange::Full;
    };
    if raw.len() > MAX_HEADER {
        return ByteRange::Unsatisfiable;
    }
    let Ok(value) = std::str::from_utf8(raw) else {
        return ByteRange::Unsatisfiable;
    };
    let value = value.trim();
    let Some((unit, set)) = value.split_once('=') else {
        return ByteRange::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return ByteRange::Full;
    }
    if set.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(n) if n > 0 && size > 0 => size.saturating_sub(n)..size,
            _ => return ByteRange::Unsatisfiable,
        },
        (start, "") => match number(start) {
            Some(a) if a < size => a..size,
            _ => return ByteRange::Unsatisfiable,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(a), Some(b)) if a <= b && a < size => a..b.saturating_add(1).min(size),
            _ => return ByteRange::Unsatisfiable,
        },
    };
    ByteRange::Partial(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: &str, size: u64) -> ByteRange {
        parse(Some(h.as_bytes()), size)
    }

    #[test]
    fn single_ranges_are_partial() {
        assert_eq!(parse(None, 10), ByteRange::Full);
        assert_eq!(p("bytes=0-", 10), ByteRange::Partial(0..10));
        assert_eq!(p("bytes=2-4", 10), ByteRange::Partial(2..5));
        assert_eq!(p("bytes=2-400", 10), ByteRange::Partial(2..10));
        assert_eq!(p("bytes=9-9", 10), ByteRange::Partial(9..10));
        assert_eq!(p("bytes=-3", 10), ByteRange::Partial(7..10));
        assert_eq!(p("bytes=-30", 10), ByteRange::Partial(0..10));
        assert_eq!(p(" Bytes = 1 - 2 ", 10), ByteRange::Partial(1..3));
    }

    #[test]
    fn bad_or_past_the_end_ranges_are_unsatisfiable() {
        for h in [
            "bytes=10-",
            "bytes=10-20",
            "bytes=5-2",
            "bytes=-0",
            "bytes=abc",
            "bytes=1-x",
            "bytes=--1",
            "bytes=+1-2",
            "bytes",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(p(h, 10), ByteRange::Unsatisfiable, "{h}");
        }
        assert_eq!(p("bytes=0-", 0), ByteRange::Unsatisfiable);
        assert_eq!(p("bytes=-1", 0), ByteRange::Unsatisfiable);
        assert_eq!(
            p(&format!("bytes=0-{}", "1".repeat(300)), 10),
            ByteRange::Unsatisfiable
        );
        assert_eq!(parse(Some(&[0xff, 0xfe]), 10), ByteRange::Unsatisfiable);
    }

    #[test]
    fn several_ranges_and_other_units_get_the_whole_file() {
        assert_eq!(p("bytes=0-1,5-6", 10), ByteRange::Full);
        assert_eq!(p("items=0-1", 10), ByteRange::Full);
    }
}
