//! Test helpers: a throwaway database per test (the workspace's one, from driftless-testdb), and
//! an Account mapping.

#![allow(dead_code)]

use driftless_core::describe::{FieldDescribe, ObjectDescribe};
use driftless_core::mapping::MappingFile;

pub use driftless_testdb::{connect, TestDb};

pub fn fd(name: &str, t: &str, length: u32) -> FieldDescribe {
    FieldDescribe {
        name: name.into(),
        sf_type: t.into(),
        length,
        ..Default::default()
    }
}

pub fn account_describe() -> ObjectDescribe {
    ObjectDescribe {
        name: "Account".into(),
        fields: vec![
            fd("Id", "id", 18),
            fd("IsDeleted", "boolean", 0),
            fd("SystemModstamp", "datetime", 0),
            fd("Name", "string", 255),
            fd("AnnualRevenue", "currency", 0),
            fd("Industry", "picklist", 40),
            fd("Description", "textarea", 32000),
        ],
    }
}

pub fn mappings(fields: &str, indexes: &str) -> MappingFile {
    MappingFile::parse(&format!(
        r#"{{"mappings":[{{"object_name":"Account","config":{{"access":"read_only",
        "sf_polling_seconds":600,"fields":{{{fields}}},"indexes":{{{indexes}}}}}}}],"version":1}}"#
    ))
    .unwrap()
}
