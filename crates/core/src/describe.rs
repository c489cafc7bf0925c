//! The slice of a Salesforce sObject describe that mapping validation and DDL need.
//!
//! The API client converts its full describe result into these; keeping the model minimal keeps this
//! crate free of network types.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectDescribe {
    /// API name as Salesforce spells it, e.g. `Invoice__c`.
    pub name: String,
    pub fields: Vec<FieldDescribe>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FieldDescribe {
    pub name: String,
    /// The describe `type` value: `id`, `reference`, `string`, `textarea`, `picklist`, ...
    pub sf_type: String,
    /// Characters for text types, 0 otherwise.
    pub length: u32,
    pub precision: u32,
    pub scale: u32,
    /// `externalId` in the describe: required of a read_write mapping's upsert field.
    pub external_id: bool,
    /// `unique` in the describe: also required of the upsert field (Heroku Connect's rule, §1.1).
    pub unique: bool,
    pub nillable: bool,
    /// Formula fields: they never move SystemModstamp, so changes to them are not polled (HC §3.6).
    pub calculated: bool,
    /// `calculatedFormula`: the formula text of a calculated field.
    #[serde(default)]
    pub calculated_formula: Option<String>,
    /// `referenceTo` of a lookup: the object(s) it points at.
    #[serde(default)]
    pub reference_to: Vec<String>,
    /// `relationshipName` of a lookup (`Account` for `AccountId`): how formulas and SOQL name it.
    #[serde(default)]
    pub relationship_name: Option<String>,
}

impl ObjectDescribe {
    /// Salesforce API names are case-insensitive, and hand-written mapping files are not always
    /// spelled like the describe.
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The lookup whose `relationshipName` is `name` (`Account` finds `AccountId`).
    pub fn relationship(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }
}
