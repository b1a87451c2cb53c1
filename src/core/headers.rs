//! Header values the host itself interprets, parsed once and strictly.

use http::header::CONTENT_LENGTH;
use http::HeaderMap;

/// Why a head's `Content-Length` cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ContentLengthError {
    /// A value that is not one run of ASCII digits fitting a `u64` (a sign,
    /// whitespace, a comma-separated list, an empty value, non-ASCII...).
    #[error("Content-Length is not a plain decimal number")]
    Invalid,
    /// Several values that disagree.
    #[error("conflicting Content-Length values")]
    Conflicting,
}

/// One `Content-Length` value: ASCII digits only (no sign, no whitespace, no
/// list), fitting a `u64`.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    // One pass, digit by digit (every response that leaves the host is
    // checked: `str::parse` after a separate digit scan cost a few hundred
    // instructions a response).
    value.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The single length all of a head's `Content-Length` values agree on (`None`
/// without any); an error if any value is invalid or two differ. Repeating the
/// same value is allowed, as RFC 9110 §8.6 lets a recipient accept.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ContentLengthError> {
    let mut found = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let n = parse_content_length(value.as_bytes()).ok_or(ContentLengthError::Invalid)?;
        if found.is_some_and(|f| f != n) {
            return Err(ContentLengthError::Conflicting);
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CONTENT_LENGTH, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn strict_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"0012"), Some(12));
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Some(u64::MAX)
        );
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b" 1",
            b"1 ",
            b"1,1",
            b"0x10",
            b"1e3",
            b"18446744073709551616",
            "١".as_bytes(),
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn repeated_and_conflicting() {
        assert_eq!(content_length(&head(&[])), Ok(None));
        assert_eq!(content_length(&head(&["5"])), Ok(Some(5)));
        assert_eq!(content_length(&head(&["5", "5"])), Ok(Some(5)));
        assert_eq!(
            content_length(&head(&["5", "6"])),
            Err(ContentLengthError::Conflicting)
        );
        assert_eq!(
            content_length(&head(&["5", "+5"])),
            Err(ContentLengthError::Invalid)
        );
        assert_eq!(
            content_length(&head(&["5, 5"])),
            Err(ContentLengthError::Invalid)
        );
    }
}
