//! Postgres identifiers built from Salesforce API names.
//!
//! Every name that reaches SQL text goes through [`Ident`]: it is validated (ASCII letters, digits,
//! underscores), lowercased the way Heroku Connect names tables and columns, and always written
//! double-quoted, so a hostile or odd describe result can never inject SQL (DESIGN.md invariant 6).

use std::fmt;

/// Postgres silently truncates identifiers to 63 bytes (NAMEDATALEN - 1).
pub const MAX_IDENT_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("empty name")]
    Empty,
    #[error("invalid name `{0}`: expected ASCII letters, digits and underscores, starting with a letter")]
    Invalid(String),
    #[error("name `{0}` is longer than 63 bytes, the Postgres identifier limit")]
    TooLong(String),
}

/// A validated, lowercased Postgres identifier. `Display` writes it double-quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// From a Salesforce API name (`Account`, `agf__External_ID__c`) or a configured schema name.
    pub fn from_sf_name(name: &str) -> Result<Ident, IdentError> {
        let first = name.chars().next().ok_or(IdentError::Empty)?;
        let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first.is_ascii_alphabetic() || !valid_chars {
            return Err(IdentError::Invalid(name.to_owned()));
        }
        if name.len() > MAX_IDENT_LEN {
            return Err(IdentError::TooLong(name.to_owned()));
        }
        Ok(Ident(name.to_ascii_lowercase()))
    }

    /// Names this crate makes itself (`_driftless_windows`, `_hc_lastop`, index names). A leading
    /// underscore is allowed here because Heroku Connect's own names use one; Salesforce names never do.
    /// Over-long derived names are shortened deterministically, see [`Ident::derived`].
    pub(crate) fn internal(name: &str) -> Ident {
        debug_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        Ident::derived(name)
    }

    /// Derived names (index names such as `hc_idx_<table>_<field>`) can exceed 63 bytes. Postgres would
    /// truncate them silently, and two long field names sharing a 63-byte prefix would then collide, so
    /// past the limit we keep a prefix and append a hash of the full name. Short names are untouched, so
    /// they match what Heroku Connect creates.
    fn derived(name: &str) -> Ident {
        let lower = name.to_ascii_lowercase();
        if lower.len() <= MAX_IDENT_LEN {
            return Ident(lower);
        }
        let hash = fnv1a(lower.as_bytes());
        let suffix = format!("_{:08x}", hash as u32);
        let keep = MAX_IDENT_LEN - suffix.len();
        Ident(format!("{}{}", &lower[..keep], suffix))
    }

    /// The bare (unquoted, lowercased) name, for catalog lookups such as `information_schema`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Validation guarantees there is no `"` to escape.
        write!(f, "\"{}\"", self.0)
    }
}

/// `"schema"."name"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    pub schema: Ident,
    pub name: Ident,
}

impl QualifiedName {
    pub fn new(schema: &Ident, name: &Ident) -> QualifiedName {
        QualifiedName {
            schema: schema.clone(),
            name: name.clone(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_and_quotes() {
        let i = Ident::from_sf_name("agf__External_ID__c").unwrap();
        assert_eq!(i.as_str(), "agf__external_id__c");
        assert_eq!(i.to_string(), "\"agf__external_id__c\"");
    }

    #[test]
    fn rejects_anything_but_letters_digits_underscores() {
        for bad in [
            "",
            "1abc",
            "_x",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "é",
            "Name__c.x",
        ] {
            assert!(Ident::from_sf_name(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(64);
        assert_eq!(
            Ident::from_sf_name(&long),
            Err(IdentError::TooLong(long.clone()))
        );
    }

    #[test]
    fn long_derived_names_stay_unique_and_within_limit() {
        let a = Ident::internal(&format!("hc_idx_{}_{}", "t".repeat(40), "a".repeat(30)));
        let b = Ident::internal(&format!("hc_idx_{}_{}", "t".repeat(40), "a".repeat(31)));
        assert_eq!(a.as_str().len(), MAX_IDENT_LEN);
        assert_ne!(a, b);
        assert_eq!(
            Ident::internal("hc_idx_account_name").as_str(),
            "hc_idx_account_name"
        );
    }

    #[test]
    fn qualified_name() {
        let q = QualifiedName::new(
            &Ident::from_sf_name("salesforce").unwrap(),
            &Ident::from_sf_name("Account").unwrap(),
        );
        assert_eq!(q.to_string(), "\"salesforce\".\"account\"");
    }
}
