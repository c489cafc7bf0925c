//! describeGlobal and sObject describe, into typed metadata.

use serde::Deserialize;

use crate::error::Result;
use crate::http::{Auth, Call};
use crate::Client;

/// `GET /sobjects`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalDescribe {
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub max_batch_size: Option<u32>,
    pub sobjects: Vec<SObjectSummary>,
}

/// One object of describeGlobal (and the top of an sObject describe).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SObjectSummary {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub key_prefix: Option<String>,
    #[serde(default)]
    pub custom: bool,
    #[serde(default)]
    pub queryable: bool,
    #[serde(default)]
    pub replicateable: bool,
    #[serde(default)]
    pub retrieveable: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub deletable: bool,
    #[serde(default)]
    pub undeletable: bool,
}

/// `GET /sobjects/{object}/describe`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SObjectDescribe {
    #[serde(flatten)]
    pub summary: SObjectSummary,
    pub fields: Vec<FieldDescribe>,
}

impl SObjectDescribe {
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// The field types a sync engine switches on; anything else is kept by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Reference,
    String,
    TextArea,
    Picklist,
    MultiPicklist,
    Combobox,
    Email,
    Phone,
    Url,
    EncryptedString,
    Boolean,
    Int,
    Long,
    Double,
    Currency,
    Percent,
    Date,
    DateTime,
    Time,
    Base64,
    Address,
    Location,
    AnyType,
    Other(String),
}

impl FieldType {
    pub fn parse(s: &str) -> FieldType {
        match s {
            "id" => FieldType::Id,
            "reference" => FieldType::Reference,
            "string" => FieldType::String,
            "textarea" => FieldType::TextArea,
            "picklist" => FieldType::Picklist,
            "multipicklist" => FieldType::MultiPicklist,
            "combobox" => FieldType::Combobox,
            "email" => FieldType::Email,
            "phone" => FieldType::Phone,
            "url" => FieldType::Url,
            "encryptedstring" => FieldType::EncryptedString,
            "boolean" => FieldType::Boolean,
            "int" => FieldType::Int,
            "long" => FieldType::Long,
            "double" => FieldType::Double,
            "currency" => FieldType::Currency,
            "percent" => FieldType::Percent,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            "time" => FieldType::Time,
            "base64" => FieldType::Base64,
            "address" => FieldType::Address,
            "location" => FieldType::Location,
            "anyType" => FieldType::AnyType,
            other => FieldType::Other(other.to_owned()),
        }
    }

    /// Compound and binary fields that Bulk queries cannot select.
    pub fn is_bulk_unsupported(&self) -> bool {
        matches!(
            self,
            FieldType::Address | FieldType::Location | FieldType::Base64
        )
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<FieldType, D::Error> {
        String::deserialize(d).map(|s| FieldType::parse(&s))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub length: u32,
    #[serde(default)]
    pub byte_length: u32,
    #[serde(default)]
    pub precision: u32,
    #[serde(default)]
    pub scale: u32,
    #[serde(default)]
    pub digits: u32,
    #[serde(default)]
    pub nillable: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub filterable: bool,
    #[serde(default)]
    pub sortable: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub id_lookup: bool,
    #[serde(default)]
    pub calculated: bool,
    /// The formula of a calculated field.
    #[serde(default)]
    pub calculated_formula: Option<String>,
    #[serde(default)]
    pub custom: bool,
    #[serde(default)]
    pub name_field: bool,
    #[serde(default)]
    pub reference_to: Vec<String>,
    #[serde(default)]
    pub relationship_name: Option<String>,
    #[serde(default)]
    pub soap_type: Option<String>,
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PicklistValue {
    pub value: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub default_value: bool,
}

impl Client {
    /// `GET /sobjects`.
    pub async fn describe_global(&self) -> Result<GlobalDescribe> {
        self.json(&Call::new(
            "describe_global",
            Auth::Bearer,
            self.data_path("sobjects"),
        ))
        .await
    }

    /// `GET /sobjects/{object}/describe`.
    pub async fn describe(&self, object: &str) -> Result<SObjectDescribe> {
        let path = self.data_path(&format!(
            "sobjects/{}/describe",
            urlencoding::encode(object)
        ));
        self.json(&Call::new("describe", Auth::Bearer, path)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_describe() {
        let d: SObjectDescribe = serde_json::from_str(
            r#"{"name":"Account","label":"Account","keyPrefix":"001","custom":false,"queryable":true,
            "replicateable":true,"createable":true,"fields":[
             {"name":"Id","type":"id","length":18,"byteLength":18,"nillable":false,"idLookup":true,"filterable":true,"soapType":"tns:ID"},
             {"name":"OwnerId","type":"reference","referenceTo":["Group","User"],"relationshipName":"Owner"},
             {"name":"Rating","type":"picklist","picklistValues":[{"active":true,"defaultValue":false,"label":"Hot","validFor":null,"value":"Hot"}]},
             {"name":"Geo","type":"location"},
             {"name":"Odd","type":"complexvalue","unknownKey":1}]}"#,
        )
        .unwrap();
        assert_eq!(d.summary.key_prefix.as_deref(), Some("001"));
        assert_eq!(d.field("ownerid").unwrap().reference_to, ["Group", "User"]);
        assert_eq!(d.field("Rating").unwrap().picklist_values[0].value, "Hot");
        assert!(d.field("Geo").unwrap().field_type.is_bulk_unsupported());
        assert_eq!(
            d.field("Odd").unwrap().field_type,
            FieldType::Other("complexvalue".into())
        );
    }
}
