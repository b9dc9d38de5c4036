//! The optional bearer API key, compared in constant time.

use sha2::{Digest, Sha256};

/// Whether an `Authorization` header value carries `key` as a bearer token.
///
/// Both sides are hashed first, so the comparison takes the same time whatever the length or
/// content of the token sent; the 32-byte digests are then compared without early exit.
pub fn bearer_matches(header: Option<&[u8]>, key: &str) -> bool {
    let Some(value) = header else {
        return false;
    };
    let Some(token) = strip_bearer(value) else {
        return false;
    };
    constant_time_eq(&Sha256::digest(token).into(), &Sha256::digest(key).into())
}

/// The token after a case-insensitive `Bearer ` scheme.
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = value[SCHEME.len()..].trim_ascii();
    Some(token)
}

/// Equality of two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert!(bearer_matches(Some(b"Bearer sk-1"), "sk-1"));
        assert!(bearer_matches(Some(b"bearer  sk-1 "), "sk-1"));
        assert!(!bearer_matches(Some(b"Bearer sk-2"), "sk-1"));
        assert!(!bearer_matches(Some(b"Bearer sk-1x"), "sk-1"));
        assert!(!bearer_matches(Some(b"Bearer "), "sk-1"));
        assert!(!bearer_matches(Some(b"Basic sk-1"), "sk-1"));
        assert!(!bearer_matches(Some(b"sk-1"), "sk-1"));
        assert!(!bearer_matches(None, "sk-1"));
    }
}
