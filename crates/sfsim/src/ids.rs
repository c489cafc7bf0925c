//! Salesforce record Ids: 15-character case-sensitive base-62 with a 3-character key prefix, and the
//! 18-character form whose last 3 characters encode the case of the first 15.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The two characters after the key prefix; real orgs put a pod/instance marker here.
const POD: &str = "5g";
/// Digits left for the sequence number: 15 - 3 (prefix) - 2 (pod).
const SEQ_DIGITS: usize = 10;

/// Appends the 3-character case checksum to a 15-character Id.
pub fn to_18(id15: &str) -> String {
    let bytes = id15.as_bytes();
    debug_assert_eq!(bytes.len(), 15);
    let mut out = String::with_capacity(18);
    out.push_str(id15);
    for chunk in bytes.chunks(5) {
        let mut bits = 0usize;
        for (i, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(CHECKSUM[bits] as char);
    }
    out
}

/// Normalises a 15- or 18-character Id to its 18-character form; None when it is not an Id.
/// An 18-character Id whose checksum does not match its first 15 characters is rejected, as
/// Salesforce rejects it with MALFORMED_ID.
pub fn normalize(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(to_18(id)),
        18 => {
            let expected = to_18(&id[..15]);
            expected[15..]
                .eq_ignore_ascii_case(&id[15..])
                .then_some(expected)
        }
        _ => None,
    }
}

/// Builds the 18-character Id of the `seq`-th record with the given key prefix. Sequence numbers
/// are fixed-width base-62, so Id order (bytewise, as SOQL compares Ids) is creation order.
pub fn make(prefix: &str, seq: u64) -> String {
    let mut digits = [b'0'; SEQ_DIGITS];
    let mut n = seq;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut id15 = String::with_capacity(15);
    id15.push_str(prefix);
    id15.push_str(POD);
    id15.push_str(std::str::from_utf8(&digits).expect("ascii"));
    to_18(&id15)
}

/// Reverses [`make`]: the key prefix and sequence number of an Id minted by this simulator.
pub fn parse(id: &str) -> Option<(&str, u64)> {
    if id.len() != 15 && id.len() != 18 {
        return None;
    }
    if &id[3..5] != POD {
        return None;
    }
    let mut seq: u64 = 0;
    for b in id[5..15].bytes() {
        let d = BASE62.iter().position(|c| *c == b)? as u64;
        seq = seq.checked_mul(62)?.checked_add(d)?;
    }
    Some((&id[..3], seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_the_documented_examples() {
        assert_eq!(to_18("001D000000IRFma"), "001D000000IRFmaIAH");
        assert_eq!(to_18("001D000000Iomaz"), "001D000000IomazIAB");
        assert_eq!(to_18("003RO0000035WQg"), "003RO0000035WQgYAM");
        assert_eq!(to_18("a00D0000008pQRA"), "a00D0000008pQRAIA2");
        assert_eq!(to_18("00558000001N0Ke"), "00558000001N0KeAAK");
    }

    #[test]
    fn normalize_accepts_both_forms_and_rejects_bad_checksums() {
        assert_eq!(
            normalize("001D000000IRFma").as_deref(),
            Some("001D000000IRFmaIAH")
        );
        assert_eq!(
            normalize("001D000000IRFmaIAH").as_deref(),
            Some("001D000000IRFmaIAH")
        );
        assert_eq!(
            normalize("001D000000IRFmaiah").as_deref(),
            Some("001D000000IRFmaIAH")
        );
        assert_eq!(normalize("001D000000IRFmaAAA"), None);
        assert_eq!(normalize("001D0000'0IRFma"), None);
        assert_eq!(normalize("001"), None);
    }

    #[test]
    fn minted_ids_round_trip_and_sort_in_creation_order() {
        let a = make("001", 61);
        let b = make("001", 62);
        let c = make("001", 3_000_000);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(parse(&c), Some(("001", 3_000_000)));
        assert_eq!(parse(&c[..15]), Some(("001", 3_000_000)));
        assert_eq!(normalize(&c).as_deref(), Some(c.as_str()));
    }
}
