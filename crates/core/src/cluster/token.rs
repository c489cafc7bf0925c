//! Checking the admin and worker bearer tokens without a timing side channel.
//!
//! A plain `==` on strings returns at the first differing byte, so response times tell an attacker
//! how long a prefix of their guess is right. These comparisons take time that depends only on the
//! length of what the client sent, which the client knows anyway.

use crate::secret::Secret;

/// True when `given` equals `expected`, in time independent of where they differ and of
/// `expected`'s length. An empty `expected` never matches: an unset token must not mean "anyone".
pub fn tokens_equal(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    // Any length difference poisons the result, but the loop still walks all of `given`, reading
    // `expected` cyclically, so neither the position of a mismatch nor `expected.len()` shows.
    let mut diff = u8::from(given.len() != expected.len());
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ expected[i % expected.len()];
    }
    // Keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// Checks an `Authorization` header value (`Bearer <token>`, scheme case-insensitive as RFC 7235
/// says) against the configured token. A missing or malformed header is simply not authorized.
pub fn bearer_matches(authorization: Option<&str>, expected: &Secret) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && tokens_equal(token.trim_start().as_bytes(), expected.expose().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tokens_match() {
        assert!(tokens_equal(b"s3cret-token", b"s3cret-token"));
        assert!(tokens_equal(b"x", b"x"));
    }

    #[test]
    fn any_difference_fails() {
        assert!(!tokens_equal(b"s3cret-tokeN", b"s3cret-token"));
        assert!(!tokens_equal(b"S3cret-token", b"s3cret-token"));
        assert!(!tokens_equal(b"s3cret-toke", b"s3cret-token"), "prefix");
        assert!(
            !tokens_equal(b"s3cret-token!", b"s3cret-token"),
            "extension"
        );
        // The cyclic read must not make a repetition of the token match it.
        assert!(!tokens_equal(b"abab", b"ab"));
        assert!(!tokens_equal(b"", b"ab"));
    }

    #[test]
    fn an_empty_expected_token_matches_nothing() {
        assert!(!tokens_equal(b"", b""));
        assert!(!tokens_equal(b"anything", b""));
    }

    #[test]
    fn bearer_header_parsing() {
        let t = Secret::new("tok-123");
        assert!(bearer_matches(Some("Bearer tok-123"), &t));
        assert!(bearer_matches(Some("bearer tok-123"), &t));
        assert!(bearer_matches(Some("BEARER  tok-123 "), &t));
        assert!(!bearer_matches(Some("Basic tok-123"), &t));
        assert!(!bearer_matches(Some("Bearer tok-124"), &t));
        assert!(!bearer_matches(Some("Bearer"), &t));
        assert!(!bearer_matches(Some("tok-123"), &t));
        assert!(!bearer_matches(None, &t));
        assert!(!bearer_matches(Some("Bearer "), &Secret::new("")));
    }
}
