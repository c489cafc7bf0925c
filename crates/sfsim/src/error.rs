//! Salesforce's per-record error shape: `{"statusCode"|"errorCode", "message", "fields"}`.

use serde_json::json;

/// An error about one record or request, as Salesforce reports it. REST single-record calls put
/// it in a JSON array under `errorCode`; SaveResults put it under `statusCode`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SfError {
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl SfError {
    pub fn new(code: &'static str, message: impl Into<String>) -> SfError {
        SfError {
            code,
            message: message.into(),
            fields: vec![],
        }
    }

    pub fn with_fields(mut self, fields: Vec<String>) -> SfError {
        self.fields = fields;
        self
    }

    /// The REST error array element: `{"message":…,"errorCode":…,"fields":[…]}`.
    pub fn rest_json(&self) -> serde_json::Value {
        if self.fields.is_empty() {
            json!({"message": self.message, "errorCode": self.code})
        } else {
            json!({"message": self.message, "errorCode": self.code, "fields": self.fields})
        }
    }

    /// The SaveResult error element: `{"statusCode":…,"message":…,"fields":[…]}`.
    pub fn save_result_json(&self) -> serde_json::Value {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }

    pub fn not_found() -> SfError {
        SfError::new("NOT_FOUND", "The requested resource does not exist")
    }

    pub fn malformed_id(object: &str, id: &str) -> SfError {
        SfError::new(
            "MALFORMED_ID",
            format!("{object} ID: id value of incorrect type: {id}"),
        )
        .with_fields(vec!["Id".into()])
    }

    pub fn invalid_type(object: &str) -> SfError {
        SfError::new(
            "INVALID_TYPE",
            format!(
                "sObject type '{object}' is not supported. If you are attempting to use a custom object, be sure to \
                 append the '__c' after the entity name. Please reference your WSDL or the describe call for the \
                 appropriate names."
            ),
        )
    }
}
