//! `--objects FILE`: objects from describe JSON, the body of
//! `GET /services/data/vXX.X/sobjects/OBJECT/describe` (one object) or `{"sobjects":[...]}`, so a
//! user can simulate their own org's objects.
//!
//! The seven system fields are the simulator's own (the store keeps them at fixed positions);
//! every other field comes from the file. Types a sync engine cannot map (compound `address` and
//! `location`, `base64`, `anyType`, `time`, ...) are left out, as Bulk queries leave them out; a
//! type Salesforce does not have is an error.

use crate::schema::{system_fields, FieldDef, FieldType, ObjectDef, Schema};
use serde_json::Value as Json;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ObjectsFileError {
    #[error("--objects {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("--objects {path}: not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("--objects {path}: {what}")]
    Shape { path: String, what: String },
    #[error("--objects {path}: object {object}: {what}")]
    Object {
        path: String,
        object: String,
        what: String,
    },
    #[error("--objects {path}: object {object}, field {field}: {what}")]
    Field {
        path: String,
        object: String,
        field: String,
        what: String,
    },
}

/// Names the system fields have in every describe; the simulator supplies its own.
const SYSTEM: [&str; 7] = [
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
];

/// Field types that exist on Salesforce but that the simulator does not store (compound fields
/// and binary or untyped values): left out of the object.
const SKIPPED_TYPES: [&str; 8] = [
    "address",
    "location",
    "base64",
    "anyType",
    "complexvalue",
    "time",
    "datacategorygroupreference",
    "json",
];

/// Reads one describe file into object definitions.
pub fn read(path: &Path) -> Result<Vec<ObjectDef>, ObjectsFileError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ObjectsFileError::Read {
        path: p.clone(),
        source,
    })?;
    parse(&p, &text)
}

/// Parses describe JSON; `path` only names the source in errors.
pub fn parse(path: &str, text: &str) -> Result<Vec<ObjectDef>, ObjectsFileError> {
    let doc: Json = serde_json::from_str(text).map_err(|source| ObjectsFileError::Json {
        path: path.into(),
        source,
    })?;
    let list: Vec<&Json> = match doc.get("sobjects") {
        Some(Json::Array(items)) => items.iter().collect(),
        Some(_) => {
            return Err(ObjectsFileError::Shape {
                path: path.into(),
                what: "\"sobjects\" must be an array of describe results".into(),
            })
        }
        None if doc.get("fields").is_some() => vec![&doc],
        None => return Err(ObjectsFileError::Shape {
            path: path.into(),
            what:
                "expected a describe result (with \"name\" and \"fields\") or {\"sobjects\":[...]}"
                    .into(),
        }),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, o)| object(path, i, o))
        .collect()
}

fn object(path: &str, index: usize, o: &Json) -> Result<ObjectDef, ObjectsFileError> {
    let Some(name) = o.get("name").and_then(Json::as_str) else {
        return Err(ObjectsFileError::Shape {
            path: path.into(),
            what: format!("object #{} has no \"name\"", index + 1),
        });
    };
    let obj_err = |what: String| ObjectsFileError::Object {
        path: path.into(),
        object: name.into(),
        what,
    };
    if !is_api_name(name) {
        return Err(obj_err("is not a valid API name".into()));
    }
    let key_prefix = match o.get("keyPrefix") {
        Some(Json::String(k)) if k.len() == 3 && k.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            k.clone()
        }
        Some(Json::String(k)) => {
            return Err(obj_err(format!(
                "keyPrefix '{k}' is not 3 letters or digits"
            )))
        }
        _ => {
            return Err(obj_err(
                "has no keyPrefix: objects without one hold no records".into(),
            ))
        }
    };
    let Some(fields) = o.get("fields").and_then(Json::as_array) else {
        return Err(obj_err("\"fields\" must be an array".into()));
    };
    let text = |k: &str| o.get(k).and_then(Json::as_str).map(str::to_string);
    let mut defs = system_fields(false);
    for (i, fj) in fields.iter().enumerate() {
        let Some(fname) = fj.get("name").and_then(Json::as_str) else {
            return Err(obj_err(format!("field #{} has no \"name\"", i + 1)));
        };
        if SYSTEM.iter().any(|s| s.eq_ignore_ascii_case(fname)) {
            continue;
        }
        let field_err = |what: String| ObjectsFileError::Field {
            path: path.into(),
            object: name.into(),
            field: fname.into(),
            what,
        };
        if !is_api_name(fname) {
            return Err(field_err("is not a valid API name".into()));
        }
        if defs.iter().any(|d| d.name.eq_ignore_ascii_case(fname)) {
            return Err(field_err("appears twice".into()));
        }
        if let Some(def) = field(fname, fj).map_err(field_err)? {
            defs.push(def);
        }
    }
    let writable = o.get("createable").and_then(Json::as_bool).unwrap_or(true);
    Ok(ObjectDef {
        name: name.into(),
        label: text("label").unwrap_or_else(|| name.into()),
        label_plural: text("labelPlural").unwrap_or_else(|| name.into()),
        key_prefix,
        custom: o
            .get("custom")
            .and_then(Json::as_bool)
            .unwrap_or(name.ends_with("__c")),
        writable,
        fields: defs,
    })
}

/// One field's definition; None for a type the simulator leaves out.
fn field(name: &str, f: &Json) -> Result<Option<FieldDef>, String> {
    let Some(wire) = f.get("type").and_then(Json::as_str) else {
        return Err("has no \"type\"".into());
    };
    if SKIPPED_TYPES.contains(&wire) {
        return Ok(None);
    }
    let ftype = match wire {
        "id" => FieldType::Id,
        "reference" => FieldType::Reference,
        // Free text with suggestions, or masked text: text on the wire.
        "string" | "combobox" | "encryptedstring" => FieldType::String,
        "textarea" => FieldType::Textarea,
        "picklist" => FieldType::Picklist,
        "multipicklist" => FieldType::Multipicklist,
        "boolean" => FieldType::Boolean,
        "int" => FieldType::Int,
        "long" | "double" => FieldType::Double,
        "currency" => FieldType::Currency,
        "percent" => FieldType::Percent,
        "date" => FieldType::Date,
        "datetime" => FieldType::Datetime,
        "email" => FieldType::Email,
        "phone" => FieldType::Phone,
        "url" => FieldType::Url,
        other => return Err(format!("type '{other}' is not a Salesforce field type")),
    };
    let flag = |k: &str, default: bool| -> Result<bool, String> {
        match f.get(k) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(v) => Err(format!("\"{k}\" must be true or false, not {v}")),
        }
    };
    let number = |k: &str| -> Result<u32, String> {
        match f.get(k) {
            None | Some(Json::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("\"{k}\" must be a whole number, not {v}")),
        }
    };
    let length = number("length")?;
    if ftype.is_textual() && !matches!(ftype, FieldType::Id | FieldType::Reference) && length == 0 {
        return Err(format!("a {wire} field needs a positive \"length\""));
    }
    if length > 131_072 {
        return Err(format!("length {length} is above Salesforce's 131072"));
    }
    let calculated = flag("calculated", false)?;
    let auto_number = flag("autoNumber", false)?;
    let reference_to: Vec<String> = match f.get("referenceTo") {
        None | Some(Json::Null) => vec![],
        Some(Json::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("\"referenceTo\" holds a non-string {t}"))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(format!("\"referenceTo\" must be an array, not {v}")),
    };
    if ftype == FieldType::Reference && reference_to.is_empty() {
        return Err("a reference field needs \"referenceTo\"".into());
    }
    let picklist_values: Vec<String> = match f.get("picklistValues") {
        None | Some(Json::Null) => vec![],
        Some(Json::Array(a)) => a
            .iter()
            .filter(|v| v.get("active").and_then(Json::as_bool).unwrap_or(true))
            .map(|v| {
                v.get("value")
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("a picklist value has no \"value\": {v}"))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(format!("\"picklistValues\" must be an array, not {v}")),
    };
    if matches!(ftype, FieldType::Picklist | FieldType::Multipicklist) && picklist_values.is_empty()
    {
        return Err("a picklist needs at least one active value in \"picklistValues\"".into());
    }
    // A formula or roll-up (calculated) and an auto-number are computed by the org: read-only.
    let computed = calculated || auto_number;
    let precision = number("precision")?;
    let scale = number("scale")?;
    Ok(Some(FieldDef {
        name: name.into(),
        label: f
            .get("label")
            .and_then(Json::as_str)
            .unwrap_or(name)
            .to_string(),
        ftype,
        length,
        precision,
        scale,
        digits: number("digits")?,
        nillable: flag("nillable", true)?,
        createable: !computed && flag("createable", true)?,
        updateable: !computed && flag("updateable", true)?,
        defaulted_on_create: flag("defaultedOnCreate", ftype == FieldType::Boolean)? || computed,
        unique: flag("unique", false)?,
        external_id: flag("externalId", false)?,
        name_field: flag("nameField", false)?,
        custom: flag("custom", name.ends_with("__c"))?,
        filterable: flag("filterable", true)?,
        reference_to,
        relationship_name: f
            .get("relationshipName")
            .and_then(Json::as_str)
            .map(str::to_string),
        picklist_values,
        calculated,
        calculated_formula: f
            .get("calculatedFormula")
            .and_then(Json::as_str)
            .filter(|_| calculated)
            .map(str::to_string),
    }))
}

/// Letters, digits and underscores, starting with a letter: what Salesforce allows.
fn is_api_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Adds loaded objects to `schema`. An object of a built-in's name replaces it (the user's org
/// is what is simulated); a built-in custom object whose key prefix a loaded object takes is
/// dropped (real orgs number their custom objects from `a00` too); any other clash is an error.
pub fn merge(schema: &mut Schema, loaded: Vec<ObjectDef>) -> Result<(), String> {
    let builtin = schema.objects.len();
    let mut replaced = vec![false; builtin];
    let mut added: Vec<ObjectDef> = Vec::new();
    for o in loaded {
        if added.iter().any(|a| a.name.eq_ignore_ascii_case(&o.name)) {
            return Err(format!("--objects: object {} is defined twice", o.name));
        }
        if let Some(a) = added.iter().find(|a| a.key_prefix == o.key_prefix) {
            return Err(format!(
                "--objects: objects {} and {} share key prefix {}",
                a.name, o.name, o.key_prefix
            ));
        }
        added.push(o);
    }
    if let Some(a) = added.iter().find(|a| {
        ["User", "Organization"]
            .iter()
            .any(|n| a.name.eq_ignore_ascii_case(n))
    }) {
        return Err(format!(
            "--objects: object {} is the simulator's own and cannot be replaced",
            a.name
        ));
    }
    let mut objects = std::mem::take(&mut schema.objects);
    for a in &added {
        if let Some(i) = objects
            .iter()
            .position(|b| b.name.eq_ignore_ascii_case(&a.name))
        {
            replaced[i] = true;
        }
    }
    let mut keep = Vec::new();
    for (i, b) in objects.drain(..).enumerate() {
        if replaced[i] {
            continue;
        }
        if let Some(a) = added.iter().find(|a| a.key_prefix == b.key_prefix) {
            if !b.custom {
                return Err(format!(
                    "--objects: object {} has key prefix {}, which is {}'s",
                    a.name, a.key_prefix, b.name
                ));
            }
            tracing::info!(
                "--objects: {} takes key prefix {}; built-in {} is left out",
                a.name,
                a.key_prefix,
                b.name
            );
            continue;
        }
        keep.push(b);
    }
    keep.extend(added);
    schema.objects = keep;
    Ok(())
}
