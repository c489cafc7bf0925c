//! Checking a mapping against the object's describe and turning it into table columns.

use super::{Access, Mapping, MappingError};
use crate::describe::ObjectDescribe;
use crate::ident::Ident;
use crate::types::{pg_type, PgType};

/// Always synced, listed in the mapping or not. Heroku Connect pre-selects them and will not let them
/// be removed (reference/heroku-connect.md §1.1, the S29 export); they fill the system columns `sfid`,
/// `systemmodstamp` and `isdeleted`. IsDeleted is skipped for the few objects without it (User,
/// RecordType, EmailTemplate, §2.2).
pub const SYSTEM_FIELDS: [&str; 3] = ["Id", "SystemModstamp", "IsDeleted"];

/// Columns every mapped table has besides the mapped fields (SPEC.md §5); a mapped field may not take
/// one of these names.
pub(crate) const RESERVED_COLUMNS: [&str; 6] = [
    "id",
    "sfid",
    "systemmodstamp",
    "isdeleted",
    "_hc_lastop",
    "_hc_err",
];

/// A mapped field that gets its own column (system fields are not listed here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedField {
    /// API name as the describe spells it: use this in SOQL.
    pub sf_name: String,
    pub sf_type: String,
    pub column: Ident,
    pub pg_type: PgType,
}

/// An index the mapping asks for (system indexes are added by [`crate::ddl`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedIndex {
    pub column: Ident,
    pub unique: bool,
}

/// A mapping checked against its describe: everything DDL and the sync engine need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMapping {
    /// API name as the describe spells it.
    pub object_name: String,
    pub table: Ident,
    pub access: Access,
    /// False for objects without IsDeleted: do not select it, leave the column null.
    pub has_is_deleted: bool,
    /// Mapped non-system fields, in the mapping's (alphabetical) order.
    pub fields: Vec<ResolvedField>,
    pub indexes: Vec<ResolvedIndex>,
    /// Describe spelling of the upsert field, for read_write mappings.
    pub upsert_field: Option<String>,
}

impl ResolvedMapping {
    /// The SOQL select list: system fields first, then the mapped fields.
    pub fn soql_fields(&self) -> Vec<&str> {
        let mut out = vec!["Id", "SystemModstamp"];
        if self.has_is_deleted {
            out.push("IsDeleted");
        }
        out.extend(self.fields.iter().map(|f| f.sf_name.as_str()));
        out
    }

    /// The column a Salesforce field lands in, system fields included.
    pub fn column_for(&self, sf_name: &str) -> Option<Ident> {
        if let Some(sys) = system_column(sf_name) {
            return Some(Ident::internal(sys));
        }
        self.fields
            .iter()
            .find(|f| f.sf_name.eq_ignore_ascii_case(sf_name))
            .map(|f| f.column.clone())
    }
}

fn system_column(sf_name: &str) -> Option<&'static str> {
    match sf_name.to_ascii_lowercase().as_str() {
        "id" => Some("sfid"),
        "systemmodstamp" => Some("systemmodstamp"),
        "isdeleted" => Some("isdeleted"),
        _ => None,
    }
}

/// The describe for `object_name` among `describes`, or the "unknown object" error.
pub fn describe_for<'a>(
    object_name: &str,
    describes: &'a [ObjectDescribe],
) -> Result<&'a ObjectDescribe, MappingError> {
    describes
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(object_name))
        .ok_or_else(|| {
            MappingError::new(
                Some(object_name),
                "object_name",
                "no such object in the Salesforce org",
            )
        })
}

/// Checks `mapping` against `describe` and works out its columns and indexes. Returns every problem
/// found, not just the first, so one edit of the file can fix them all.
pub fn resolve(
    mapping: &Mapping,
    describe: &ObjectDescribe,
) -> Result<ResolvedMapping, Vec<MappingError>> {
    let name = mapping.object_name.as_str();
    let err = |key: &str, msg: String| MappingError::new(Some(name), key, msg);
    if !describe.name.eq_ignore_ascii_case(name) {
        return Err(vec![err(
            "object_name",
            format!(
                "no such object in the Salesforce org (describe is for {})",
                describe.name
            ),
        )]);
    }
    let mut errors = Vec::new();
    let table = match Ident::from_sf_name(&describe.name) {
        Ok(t) => t,
        Err(e) => return Err(vec![err("object_name", e.to_string())]),
    };
    for required in ["Id", "SystemModstamp"] {
        if describe.field(required).is_none() {
            errors.push(err(
                "object_name",
                format!("object has no {required} field, so it cannot be polled for changes"),
            ));
        }
    }

    let mut fields = Vec::new();
    for field in mapping.config.fields.keys() {
        if system_column(field).is_some() {
            continue;
        }
        let key = format!("config.fields.{field}");
        let Some(fd) = describe.field(field) else {
            errors.push(err(&key, format!("no such field on {}", describe.name)));
            continue;
        };
        let column = match Ident::from_sf_name(&fd.name) {
            Ok(c) => c,
            Err(e) => {
                errors.push(err(&key, e.to_string()));
                continue;
            }
        };
        if RESERVED_COLUMNS.contains(&column.as_str()) {
            errors.push(err(
                &key,
                format!("column {} is reserved for a system column", column.as_str()),
            ));
            continue;
        }
        match pg_type(&fd.sf_type, fd.length) {
            Ok(pg) => fields.push(ResolvedField {
                sf_name: fd.name.clone(),
                sf_type: fd.sf_type.clone(),
                column,
                pg_type: pg,
            }),
            Err(e) => errors.push(err(&key, e.to_string())),
        }
    }

    let mut indexes = Vec::new();
    for (field, opts) in &mapping.config.indexes {
        let key = format!("config.indexes.{field}");
        match system_column(field) {
            // Covered by the system indexes hcu_idx_<table>_sfid and hc_idx_<table>_systemmodstamp.
            Some("sfid") | Some("systemmodstamp") => continue,
            Some(col) => indexes.push(ResolvedIndex {
                column: Ident::internal(col),
                unique: opts.unique,
            }),
            None => match fields
                .iter()
                .find(|f| f.sf_name.eq_ignore_ascii_case(field))
            {
                Some(f) => indexes.push(ResolvedIndex {
                    column: f.column.clone(),
                    unique: opts.unique,
                }),
                None => errors.push(err(&key, "indexed field is not in config.fields".into())),
            },
        }
    }

    let upsert_field = match &mapping.config.upsert_field {
        None => None,
        Some(u) => {
            let key = "config.upsert_field";
            match describe.field(u) {
                None => {
                    errors.push(err(key, format!("no such field on {}", describe.name)));
                    None
                }
                Some(fd) => {
                    if !mapping
                        .config
                        .fields
                        .keys()
                        .any(|f| f.eq_ignore_ascii_case(u))
                    {
                        errors.push(err(key, format!("{u} must also be in config.fields")));
                    }
                    if !(fd.external_id && fd.unique) {
                        errors.push(err(
                            key,
                            format!("{u} must be a unique External ID field in Salesforce"),
                        ));
                    }
                    Some(fd.name.clone())
                }
            }
        }
    };
    if mapping.config.access == Access::ReadWrite && upsert_field.is_none() && errors.is_empty() {
        errors.push(err(
            "config.upsert_field",
            "read_write mappings need an upsert field: a unique External ID field".into(),
        ));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ResolvedMapping {
        object_name: describe.name.clone(),
        table,
        access: mapping.config.access,
        has_is_deleted: describe.field("IsDeleted").is_some(),
        fields,
        indexes,
        upsert_field,
    })
}
