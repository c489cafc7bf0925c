//! Salesforce field type → Postgres column type.
//!
//! Source: shared/reference/heroku-connect.md §2.4 (the types seen in Heroku Connect-generated DDL and
//! in django-heroku-connect's field classes, since the official table is not public) and §2.2 for the
//! system columns. Rows marked "inference" below are not in that table; they are our choice.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Varchar(u32),
    Text,
    Boolean,
    DoublePrecision,
    Integer,
    BigInt,
    Date,
    /// `timestamp without time zone`, holding UTC, as Heroku Connect does (§2.3).
    Timestamp,
    Time,
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Varchar(n) => write!(f, "varchar({n})"),
            PgType::Text => f.write_str("text"),
            PgType::Boolean => f.write_str("boolean"),
            PgType::DoublePrecision => f.write_str("double precision"),
            PgType::Integer => f.write_str("integer"),
            PgType::BigInt => f.write_str("bigint"),
            PgType::Date => f.write_str("date"),
            PgType::Timestamp => f.write_str("timestamp"),
            PgType::Time => f.write_str("time"),
        }
    }
}

impl PgType {
    /// The wire type, for `BinaryCopyInWriter` and typed parameters.
    pub fn postgres_type(&self) -> tokio_postgres::types::Type {
        use tokio_postgres::types::Type;
        match self {
            PgType::Varchar(_) => Type::VARCHAR,
            PgType::Text => Type::TEXT,
            PgType::Boolean => Type::BOOL,
            PgType::DoublePrecision => Type::FLOAT8,
            PgType::Integer => Type::INT4,
            PgType::BigInt => Type::INT8,
            PgType::Date => Type::DATE,
            PgType::Timestamp => Type::TIMESTAMP,
            PgType::Time => Type::TIME,
        }
    }

    /// How `information_schema.columns.data_type` spells this type, to compare an existing table.
    pub fn information_schema_name(&self) -> &'static str {
        match self {
            PgType::Varchar(_) => "character varying",
            PgType::Text => "text",
            PgType::Boolean => "boolean",
            PgType::DoublePrecision => "double precision",
            PgType::Integer => "integer",
            PgType::BigInt => "bigint",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp without time zone",
            PgType::Time => "time without time zone",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Salesforce type `{0}` cannot be mapped to a Postgres column")]
pub struct UnsupportedType(pub String);

/// The Postgres type for a field of Salesforce type `sf_type` (the describe `type`) with describe
/// `length`. A zero length (some describes omit it) falls back to the width Heroku Connect uses.
pub fn pg_type(sf_type: &str, length: u32) -> Result<PgType, UnsupportedType> {
    let len_or = |default: u32| if length == 0 { default } else { length };
    let t = match sf_type.to_ascii_lowercase().as_str() {
        // Id, Reference/Lookup → character varying(18)
        "id" | "reference" => PgType::Varchar(18),
        // Text / Name → varchar(n) with the Salesforce length; text formulas arrive as `string`
        // with length 1300 → varchar(1300). EncryptedString → varchar.
        "string" | "encryptedstring" => PgType::Varchar(len_or(255)),
        // Long/Rich Text Area → text. The reference does not say what plain (255) Text Area gets;
        // describe reports all three as `textarea`, so all three get `text`, which can never truncate.
        "textarea" => PgType::Text,
        // Picklist → varchar(255) (force_picklist_255). combobox is an editable picklist [inference].
        "picklist" | "combobox" => PgType::Varchar(255),
        // Multi-select picklist → varchar(4099)
        "multipicklist" => PgType::Varchar(4099),
        // Email / Phone / URL → varchar; describe lengths are 80 / 40 / 255, as django uses.
        "email" => PgType::Varchar(len_or(80)),
        "phone" => PgType::Varchar(len_or(40)),
        "url" => PgType::Varchar(len_or(255)),
        // Number, Currency, Percent → double precision ("HC maps those decimal values to double
        // precision floats")
        "double" | "currency" | "percent" => PgType::DoublePrecision,
        // Int → integer
        "int" => PgType::Integer,
        // long is not in the reference table [inference: bigint, to hold every value].
        "long" => PgType::BigInt,
        // Checkbox → boolean
        "boolean" => PgType::Boolean,
        // Date → date
        "date" => PgType::Date,
        // DateTime → timestamp without time zone (treated as UTC)
        "datetime" => PgType::Timestamp,
        // time is not in the reference table [inference].
        "time" => PgType::Time,
        // Compound (address, location), binary (base64, byte) and polymorphic (anyType) fields are
        // not mapped: HC maps compound fields through their components and flags binary fields.
        other => return Err(UnsupportedType(other.to_owned())),
    };
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_reference_table() {
        let cases = [
            ("id", 18, "varchar(18)"),
            ("reference", 18, "varchar(18)"),
            ("string", 80, "varchar(80)"),
            ("string", 1300, "varchar(1300)"),
            ("encryptedstring", 175, "varchar(175)"),
            ("textarea", 131072, "text"),
            ("textarea", 255, "text"),
            ("picklist", 40, "varchar(255)"),
            ("multipicklist", 4099, "varchar(4099)"),
            ("email", 80, "varchar(80)"),
            ("phone", 0, "varchar(40)"),
            ("url", 255, "varchar(255)"),
            ("double", 0, "double precision"),
            ("currency", 0, "double precision"),
            ("percent", 0, "double precision"),
            ("int", 0, "integer"),
            ("long", 0, "bigint"),
            ("boolean", 0, "boolean"),
            ("date", 0, "date"),
            ("datetime", 0, "timestamp"),
            ("time", 0, "time"),
        ];
        for (sf, len, pg) in cases {
            assert_eq!(pg_type(sf, len).unwrap().to_string(), pg, "{sf}");
        }
    }

    #[test]
    fn compound_and_binary_types_are_rejected() {
        for t in ["address", "location", "base64", "anyType", "complexvalue"] {
            assert!(pg_type(t, 0).is_err(), "{t}");
        }
        assert_eq!(
            pg_type("address", 0).unwrap_err().to_string(),
            "Salesforce type `address` cannot be mapped to a Postgres column"
        );
    }
}
