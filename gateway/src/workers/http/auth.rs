//! HTTP Basic authentication against `[http] password`: any user name,
//! the password compared in constant time (no early exit on the first
//! differing byte, so the time taken does not tell how much of a guess
//! was right). Pure: a header in, a verdict out.

use axum::http::HeaderValue;

/// The `WWW-Authenticate` challenge of a 401: browsers ask for a user
/// name and password, and send them with every request after.
pub(super) const CHALLENGE: &str = "Basic realm=\"packgate\", charset=\"UTF-8\"";

/// Whether `authorization` (the request's `Authorization` header) carries
/// `password`, with any user name.
pub(super) fn authorized(authorization: Option<&HeaderValue>, password: &str) -> bool {
    let Some(given) = authorization
        .and_then(|value| value.to_str().ok())
        .and_then(basic_credentials)
    else {
        return false;
    };
    let given_password = match given.iter().position(|b| *b == b':') {
        Some(colon) => &given[colon + 1..],
        None => return false,
    };
    constant_time_eq(given_password, password.as_bytes())
}

/// The decoded `user:password` bytes of a `Basic` header value.
fn basic_credentials(value: &str) -> Option<Vec<u8>> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64_decode(encoded.trim())
}

/// Standard base64 (RFC 4648, with `=` padding, which may be left out);
/// `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 || text.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut bits = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            bits |= value(*c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Whether `a` equals `b`, in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        differ |= x ^ y;
    }
    differ == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn base64_decodes_the_standard_alphabet() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64_decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Zg===").is_none());
    }

    #[test]
    fn the_right_password_with_any_user_passes() {
        // "packgate:s3cret:with:colons" and ":s3cret:with:colons".
        let good = "Basic cGFja2dhdGU6czNjcmV0OndpdGg6Y29sb25z";
        assert!(authorized(Some(&header(good)), "s3cret:with:colons"));
        assert!(authorized(
            Some(&header("basic OnMzY3JldDp3aXRoOmNvbG9ucw==")),
            "s3cret:with:colons"
        ));
        assert!(!authorized(Some(&header(good)), "s3cret"));
        assert!(!authorized(Some(&header(good)), "s3cret:with:colons:"));
        // "packgate:wrong", no colon at all, another scheme, nothing.
        assert!(!authorized(
            Some(&header("Basic cGFja2dhdGU6d3Jvbmc=")),
            "s3cret"
        ));
        assert!(!authorized(Some(&header("Basic czNjcmV0")), "s3cret"));
        assert!(!authorized(Some(&header("Bearer czNjcmV0")), "s3cret"));
        assert!(!authorized(Some(&header("Basic !!!")), "s3cret"));
        assert!(!authorized(None, "s3cret"));
    }

    #[test]
    fn comparison_needs_every_byte_and_the_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
