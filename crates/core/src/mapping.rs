//! Mappings in Heroku Connect's import/export JSON (SPEC.md §4, reference/heroku-connect.md §1.2).
//!
//! Parsing is done key by key from a `serde_json::Value` rather than with a derived `Deserialize`,
//! so that every error names the mapping and the key it is about. Keys Heroku Connect puts in its
//! exports that driftless does not use (`applied_at`, `revision`, the whole `connection` block, and
//! anything newer) are kept verbatim and written back by [`MappingFile::to_json`], so a real export
//! loads unchanged and round-trips.

mod resolve;

pub use resolve::{
    describe_for, resolve, ResolvedField, ResolvedIndex, ResolvedMapping, SYSTEM_FIELDS,
};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// The only format version Heroku Connect has exported.
pub const FORMAT_VERSION: u64 = 1;

/// Heroku Connect's default poll interval and daily API budget in every export seen (§1.2).
pub const DEFAULT_POLLING_SECONDS: u64 = 600;
pub const DEFAULT_MAX_DAILY_API_CALLS: u64 = 30000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappingFile {
    pub mappings: Vec<Mapping>,
    /// The export's `connection` block (app name, org id, feature flags...): informational, kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<Value>,
    pub version: u64,
    /// Unknown top-level keys, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapping {
    pub object_name: String,
    pub config: MappingConfig,
    /// Other keys of the mapping object (API responses carry `id`, `state`, counts...), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappingConfig {
    pub access: Access,
    /// `None` means "use the connection's `poll_interval_secs`".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sf_polling_seconds: Option<u64>,
    pub sf_notify_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sf_max_daily_api_calls: Option<u64>,
    /// Field API name → options (always `{}` in exports; kept as given).
    pub fields: BTreeMap<String, Map<String, Value>>,
    pub indexes: BTreeMap<String, IndexOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upsert_field: Option<String>,
    /// `applied_at`, `revision` and any other key, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexOptions {
    pub unique: bool,
}

/// What went wrong, where: `mappings.json: mapping Account: config.access: expected ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MappingError {
    pub file: Option<PathBuf>,
    /// The object name, or `#3` when the mapping has no usable `object_name`.
    pub mapping: Option<String>,
    /// Dotted path inside the mapping (or the file, for top-level problems), e.g. `config.access`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(m) = &self.mapping {
            write!(f, "mapping {m}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl MappingError {
    fn new(mapping: Option<&str>, key: &str, message: impl Into<String>) -> MappingError {
        MappingError {
            file: None,
            mapping: mapping.map(str::to_owned),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn in_file(mut self, file: &Path) -> MappingError {
        self.file = Some(file.to_owned());
        self
    }
}

impl MappingFile {
    pub fn load(path: &Path) -> Result<MappingFile, MappingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MappingError::new(None, "", format!("cannot read: {e}")).in_file(path))?;
        MappingFile::parse(&text).map_err(|e| e.in_file(path))
    }

    pub fn parse(text: &str) -> Result<MappingFile, MappingError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            MappingError::new(
                None,
                "",
                format!(
                    "invalid JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        MappingFile::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<MappingFile, MappingError> {
        let Value::Object(mut top) = value else {
            return Err(MappingError::new(
                None,
                "",
                "expected a JSON object with a `mappings` array",
            ));
        };
        let version = match top.remove("version") {
            None => FORMAT_VERSION,
            Some(v) => match v.as_u64() {
                Some(FORMAT_VERSION) => FORMAT_VERSION,
                _ => {
                    return Err(MappingError::new(
                        None,
                        "version",
                        format!("expected 1, got {v}"),
                    ))
                }
            },
        };
        let list = match top.remove("mappings") {
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(MappingError::new(
                    None,
                    "mappings",
                    format!("expected an array, got {}", kind(&other)),
                ))
            }
            None => return Err(MappingError::new(None, "mappings", "missing key")),
        };
        let connection = top.remove("connection");
        let mut mappings = Vec::with_capacity(list.len());
        for (i, m) in list.into_iter().enumerate() {
            let m = Mapping::from_value(i, m)?;
            if mappings
                .iter()
                .any(|o: &Mapping| o.object_name.eq_ignore_ascii_case(&m.object_name))
            {
                return Err(MappingError::new(
                    Some(&m.object_name),
                    "object_name",
                    "mapped more than once",
                ));
            }
            mappings.push(m);
        }
        Ok(MappingFile {
            mappings,
            connection,
            version,
            extra: top,
        })
    }

    /// Heroku Connect's export format, pretty-printed (`driftless ctl export`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a mapping file always serializes")
    }

    pub fn mapping(&self, object_name: &str) -> Option<&Mapping> {
        self.mappings
            .iter()
            .find(|m| m.object_name.eq_ignore_ascii_case(object_name))
    }

    /// Import merges like a PATCH (§1.2): mappings named in `other` replace ours, the rest stay.
    pub fn merge(&mut self, other: MappingFile) {
        for m in other.mappings {
            match self
                .mappings
                .iter_mut()
                .find(|o| o.object_name.eq_ignore_ascii_case(&m.object_name))
            {
                Some(slot) => *slot = m,
                None => self.mappings.push(m),
            }
        }
    }
}

impl Mapping {
    fn from_value(index: usize, value: Value) -> Result<Mapping, MappingError> {
        let at = format!("#{}", index + 1);
        let Value::Object(mut obj) = value else {
            return Err(MappingError::new(Some(&at), "", "expected a JSON object"));
        };
        let object_name = match obj.remove("object_name") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(other) => {
                return Err(MappingError::new(
                    Some(&at),
                    "object_name",
                    format!("expected a Salesforce object API name, got {other}"),
                ))
            }
            None => return Err(MappingError::new(Some(&at), "object_name", "missing key")),
        };
        let name = object_name.as_str();
        if let Err(e) = crate::ident::Ident::from_sf_name(name) {
            return Err(MappingError::new(Some(name), "object_name", e.to_string()));
        }
        let config = match obj.remove("config") {
            Some(Value::Object(c)) => MappingConfig::from_map(name, c)?,
            Some(other) => {
                return Err(MappingError::new(
                    Some(name),
                    "config",
                    format!("expected an object, got {}", kind(&other)),
                ))
            }
            None => return Err(MappingError::new(Some(name), "config", "missing key")),
        };
        Ok(Mapping {
            object_name,
            config,
            extra: obj,
        })
    }
}

impl MappingConfig {
    fn from_map(name: &str, mut c: Map<String, Value>) -> Result<MappingConfig, MappingError> {
        let err =
            |key: &str, msg: String| MappingError::new(Some(name), &format!("config.{key}"), msg);

        let access = match c.remove("access") {
            Some(Value::String(s)) if s == "read_only" => Access::ReadOnly,
            Some(Value::String(s)) if s == "read_write" => Access::ReadWrite,
            Some(other) => {
                return Err(err(
                    "access",
                    format!("expected \"read_only\" or \"read_write\", got {other}"),
                ))
            }
            None => return Err(err("access", "missing key".into())),
        };
        let sf_polling_seconds =
            optional_u64(&mut c, "sf_polling_seconds").map_err(|m| err("sf_polling_seconds", m))?;
        if sf_polling_seconds == Some(0) {
            return Err(err(
                "sf_polling_seconds",
                "expected a positive number of seconds, got 0".into(),
            ));
        }
        let sf_notify_enabled = match c.remove("sf_notify_enabled") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(err(
                    "sf_notify_enabled",
                    format!("expected true or false, got {other}"),
                ))
            }
        };
        let sf_max_daily_api_calls = optional_u64(&mut c, "sf_max_daily_api_calls")
            .map_err(|m| err("sf_max_daily_api_calls", m))?;

        let mut fields = BTreeMap::new();
        match c.remove("fields") {
            Some(Value::Object(map)) => {
                for (field, opts) in map {
                    check_field_name(name, "fields", &field)?;
                    match opts {
                        Value::Object(o) => {
                            fields.insert(field, o);
                        }
                        Value::Null => {
                            fields.insert(field, Map::new());
                        }
                        other => {
                            return Err(err(
                                &format!("fields.{field}"),
                                format!("expected an options object such as {{}}, got {other}"),
                            ))
                        }
                    }
                }
            }
            Some(other) => {
                return Err(err(
                    "fields",
                    format!("expected an object of field names, got {}", kind(&other)),
                ))
            }
            None => {
                let hint = closest_key(c.keys(), "fields")
                    .map(|k| format!(" (found `{k}`: a misspelling of `fields`?)"))
                    .unwrap_or_default();
                return Err(err("fields", format!("missing key{hint}")));
            }
        }

        let mut indexes = BTreeMap::new();
        match c.remove("indexes") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (field, opts) in map {
                    check_field_name(name, "indexes", &field)?;
                    let unique = match &opts {
                        Value::Object(o) => match o.get("unique") {
                            None | Some(Value::Null) => false,
                            Some(Value::Bool(b)) => *b,
                            Some(other) => {
                                return Err(err(
                                    &format!("indexes.{field}.unique"),
                                    format!("expected true or false, got {other}"),
                                ))
                            }
                        },
                        other => {
                            return Err(err(
                                &format!("indexes.{field}"),
                                format!("expected {{\"unique\": true|false}}, got {other}"),
                            ))
                        }
                    };
                    indexes.insert(field, IndexOptions { unique });
                }
            }
            Some(other) => {
                return Err(err(
                    "indexes",
                    format!("expected an object of field names, got {}", kind(&other)),
                ))
            }
        }

        let upsert_field = match c.remove("upsert_field") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => {
                check_field_name(name, "upsert_field", &s)?;
                Some(s)
            }
            Some(other) => {
                return Err(err(
                    "upsert_field",
                    format!("expected a field name, got {other}"),
                ))
            }
        };
        if access == Access::ReadWrite && upsert_field.is_none() {
            return Err(err(
                "upsert_field",
                "read_write mappings need an upsert field: a unique External ID field".into(),
            ));
        }
        Ok(MappingConfig {
            access,
            sf_polling_seconds,
            sf_notify_enabled,
            sf_max_daily_api_calls,
            fields,
            indexes,
            upsert_field,
            extra: c,
        })
    }

    /// Index options for `field`, matched case-insensitively.
    pub fn index(&self, field: &str) -> Option<&IndexOptions> {
        self.indexes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(field))
            .map(|(_, v)| v)
    }
}

/// The keys of a mapping's `config` that driftless reads.
const CONFIG_KEYS: &[&str] = &[
    "access",
    "sf_polling_seconds",
    "sf_notify_enabled",
    "sf_max_daily_api_calls",
    "fields",
    "indexes",
    "upsert_field",
    FORMULA_REFRESH_KEY,
];

/// Keys Heroku Connect writes into `config` that driftless keeps without reading: silent.
const CONFIG_KEYS_KEPT: &[&str] = &["applied_at", "revision", FORMULA_REFRESH_KEY];

/// Driftless's own per-mapping key, kept in `extra` so an export carries it and Heroku Connect,
/// which ignores keys it does not know, imports the file unchanged.
pub const FORMULA_REFRESH_KEY: &str = "formula_refresh_secs";

impl MappingConfig {
    /// The mapping's `formula_refresh_secs`, when it sets a positive whole number.
    pub fn formula_refresh_secs(&self) -> Option<u64> {
        self.extra
            .get(FORMULA_REFRESH_KEY)
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
    }
}

/// Keys beside `object_name` and `config` in Heroku Connect's exports and API responses
/// (reference/heroku-connect.md §1.2, §6): kept for the round trip, silent.
const MAPPING_KEYS_KEPT: &[&str] = &[
    "id",
    "state",
    "counts",
    "actions",
    "applied_at",
    "revision",
    "created_at",
    "updated_at",
    "errors",
    "api_calls",
];

/// A key driftless does not know inside a mapping: kept for the round trip, but most likely a
/// misspelling (`sf_poling_seconds`), so the loader warns instead of ignoring it silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub mapping: String,
    /// Dotted path inside the mapping, e.g. `config.sf_poling_seconds`.
    pub key: String,
    /// The known key it most resembles, when one is close (a path, like `key`).
    pub closest: Option<String>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mapping {}: unknown key `{}`, ignored",
            self.mapping, self.key
        )?;
        if let Some(c) = &self.closest {
            write!(f, " (did you mean `{c}`?)")?;
        }
        Ok(())
    }
}

impl MappingFile {
    /// Every key inside a mapping that is neither read nor one Heroku Connect is known to write.
    pub fn unknown_keys(&self) -> Vec<UnknownKey> {
        let mut out = Vec::new();
        for m in &self.mappings {
            for key in m.config.extra.keys() {
                if CONFIG_KEYS_KEPT.contains(&key.as_str()) {
                    continue;
                }
                out.push(UnknownKey {
                    mapping: m.object_name.clone(),
                    key: format!("config.{key}"),
                    closest: closest_known(key, CONFIG_KEYS).map(|k| format!("config.{k}")),
                });
            }
            for key in m.extra.keys() {
                if MAPPING_KEYS_KEPT.contains(&key.as_str()) {
                    continue;
                }
                // A config key one level too high is the likelier mistake than a typo.
                let closest = closest_known(key, CONFIG_KEYS)
                    .map(|k| format!("config.{k}"))
                    .or_else(|| closest_known(key, &["object_name", "config"]).map(str::to_owned));
                out.push(UnknownKey {
                    mapping: m.object_name.clone(),
                    key: key.clone(),
                    closest,
                });
            }
        }
        out
    }
}

/// The known key within a small edit distance of `key`: close enough to be a typo, not a
/// different word.
fn closest_known(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&key, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Among `keys`, one that looks like a misspelling of `wanted`.
fn closest_key<'a>(
    keys: impl Iterator<Item = &'a String>,
    wanted: &'static str,
) -> Option<&'a str> {
    keys.map(String::as_str)
        .find(|k| closest_known(k, &[wanted]).is_some())
}

fn optional_u64(c: &mut Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match c.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("expected a non-negative integer, got {v}")),
    }
}

fn check_field_name(mapping: &str, key: &str, field: &str) -> Result<(), MappingError> {
    crate::ident::Ident::from_sf_name(field)
        .map(|_| ())
        .map_err(|e| MappingError::new(Some(mapping), &format!("config.{key}"), e.to_string()))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
