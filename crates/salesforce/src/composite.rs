//! Writes: composite sObject collections (create, update, upsert by external id, delete; up to
//! 200 records a call, larger inputs are split) with per-record results, and single-record CRUD.
//!
//! Records that fail only with `UNABLE_TO_LOCK_ROW` are resubmitted (with backoff, not in
//! all-or-none mode) because the policy table says row locks are retried; every other per-record
//! error is returned to the caller as is.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::http::{Auth, Call};
use crate::record::{FlatSeed, RecordBuilder};
use crate::{Client, Record};

const MAX_COLLECTION: usize = 200;

/// A record to write: its sObject type and field values (include `Id` for updates).
#[derive(Clone, Debug, PartialEq)]
pub struct SObject {
    pub sobject_type: String,
    pub fields: Map<String, Value>,
}

impl SObject {
    pub fn new(sobject_type: impl Into<String>) -> SObject {
        SObject {
            sobject_type: sobject_type.into(),
            fields: Map::new(),
        }
    }

    pub fn with(mut self, field: impl Into<String>, value: impl Into<Value>) -> SObject {
        self.fields.insert(field.into(), value.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut map = Map::with_capacity(self.fields.len() + 1);
        map.insert(
            "attributes".into(),
            serde_json::json!({ "type": self.sobject_type }),
        );
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }
}

/// A per-record outcome, in input order.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SaveResult {
    #[serde(default)]
    pub id: Option<String>,
    pub success: bool,
    /// Upserts only: whether the record was created.
    #[serde(default)]
    pub created: Option<bool>,
    #[serde(default)]
    pub errors: Vec<SaveError>,
}

impl SaveResult {
    /// The kind of the first error, through the same table as request errors.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.errors
            .first()
            .map(|e| crate::kind_for_code(&e.status_code).unwrap_or(ErrorKind::Rejected))
    }

    fn only_row_locks(&self) -> bool {
        !self.success
            && !self.errors.is_empty()
            && self
                .errors
                .iter()
                .all(|e| e.status_code == "UNABLE_TO_LOCK_ROW")
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveError {
    #[serde(alias = "errorCode")]
    pub status_code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// The outcome of a single-record upsert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpsertResult {
    pub id: Option<String>,
    pub created: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CollectionBody<'a> {
    all_or_none: bool,
    records: &'a [Value],
}

#[derive(Clone, Copy)]
enum Op<'a> {
    Create,
    Update,
    Upsert {
        object: &'a str,
        external_id_field: &'a str,
    },
}

impl Client {
    /// `POST /composite/sobjects`.
    pub async fn create_records(
        &self,
        records: &[SObject],
        all_or_none: bool,
    ) -> Result<Vec<SaveResult>> {
        self.collection(Op::Create, records, all_or_none).await
    }

    /// `PATCH /composite/sobjects`; every record needs `Id`.
    pub async fn update_records(
        &self,
        records: &[SObject],
        all_or_none: bool,
    ) -> Result<Vec<SaveResult>> {
        self.collection(Op::Update, records, all_or_none).await
    }

    /// `PATCH /composite/sobjects/{object}/{external_id_field}`; every record needs that field.
    pub async fn upsert_records(
        &self,
        object: &str,
        external_id_field: &str,
        records: &[SObject],
        all_or_none: bool,
    ) -> Result<Vec<SaveResult>> {
        self.collection(
            Op::Upsert {
                object,
                external_id_field,
            },
            records,
            all_or_none,
        )
        .await
    }

    /// `DELETE /composite/sobjects?ids=`.
    pub async fn delete_records(
        &self,
        ids: &[String],
        all_or_none: bool,
    ) -> Result<Vec<SaveResult>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_COLLECTION) {
            let mut results = self.delete_chunk(chunk, all_or_none).await?;
            let mut retry = 0;
            loop {
                let pending: Vec<usize> = (0..results.len())
                    .filter(|&i| results[i].only_row_locks())
                    .collect();
                if pending.is_empty()
                    || all_or_none
                    || retry + 1 >= self.retry_policy().max_attempts
                {
                    break;
                }
                tokio::time::sleep(self.retry_policy().delay(retry)).await;
                retry += 1;
                let again: Vec<String> = pending.iter().map(|&i| chunk[i].clone()).collect();
                for (i, r) in pending
                    .into_iter()
                    .zip(self.delete_chunk(&again, false).await?)
                {
                    results[i] = r;
                }
            }
            out.extend(results);
        }
        Ok(out)
    }

    async fn delete_chunk(&self, ids: &[String], all_or_none: bool) -> Result<Vec<SaveResult>> {
        let path = self.data_path(&format!(
            "composite/sobjects?ids={}&allOrNone={all_or_none}",
            ids.join(",")
        ));
        let mut call = Call::new("composite.delete", Auth::Bearer, path);
        call.method = Method::DELETE;
        let results: Vec<SaveResult> = self.json(&call).await?;
        check_len(&results, ids.len())?;
        Ok(results)
    }

    async fn collection(
        &self,
        op: Op<'_>,
        records: &[SObject],
        all_or_none: bool,
    ) -> Result<Vec<SaveResult>> {
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(MAX_COLLECTION) {
            let json: Vec<Value> = chunk.iter().map(SObject::to_json).collect();
            let mut results = self.collection_chunk(op, &json, all_or_none).await?;
            let mut retry = 0;
            loop {
                let pending: Vec<usize> = (0..results.len())
                    .filter(|&i| results[i].only_row_locks())
                    .collect();
                if pending.is_empty()
                    || all_or_none
                    || retry + 1 >= self.retry_policy().max_attempts
                {
                    break;
                }
                let delay = self.retry_policy().delay(retry);
                tracing::warn!(
                    records = pending.len(),
                    delay_ms = delay.as_millis() as u64,
                    "row locks; resubmitting"
                );
                tokio::time::sleep(delay).await;
                retry += 1;
                let again: Vec<Value> = pending.iter().map(|&i| json[i].clone()).collect();
                for (i, r) in pending
                    .into_iter()
                    .zip(self.collection_chunk(op, &again, false).await?)
                {
                    results[i] = r;
                }
            }
            out.extend(results);
        }
        Ok(out)
    }

    async fn collection_chunk(
        &self,
        op: Op<'_>,
        records: &[Value],
        all_or_none: bool,
    ) -> Result<Vec<SaveResult>> {
        let body = CollectionBody {
            all_or_none,
            records,
        };
        let call = match op {
            // A create sent twice creates twice: only resend what the server cannot have seen.
            Op::Create => Call::new(
                "composite.create",
                Auth::Bearer,
                self.data_path("composite/sobjects"),
            )
            .json(Method::POST, &body)?
            .not_idempotent(),
            Op::Update => Call::new(
                "composite.update",
                Auth::Bearer,
                self.data_path("composite/sobjects"),
            )
            .json(Method::PATCH, &body)?,
            Op::Upsert {
                object,
                external_id_field,
            } => Call::new(
                "composite.upsert",
                Auth::Bearer,
                self.data_path(&format!(
                    "composite/sobjects/{}/{}",
                    urlencoding::encode(object),
                    urlencoding::encode(external_id_field)
                )),
            )
            .json(Method::PATCH, &body)?,
        };
        let results: Vec<SaveResult> = self.json(&call).await?;
        check_len(&results, records.len())?;
        Ok(results)
    }

    /// `POST /sobjects/{object}/`: the new record's id.
    pub async fn create(&self, object: &str, fields: &Map<String, Value>) -> Result<String> {
        let path = self.data_path(&format!("sobjects/{}/", urlencoding::encode(object)));
        let call = Call::new("sobject.create", Auth::Bearer, path)
            .json(Method::POST, fields)?
            .not_idempotent();
        let result: SaveResult = self.json(&call).await?;
        result
            .id
            .filter(|_| result.success)
            .ok_or_else(|| save_error(&result.errors))
    }

    /// `GET /sobjects/{object}/{id}[?fields=]`.
    pub async fn get(&self, object: &str, id: &str, fields: Option<&[&str]>) -> Result<Record> {
        let mut path = self.data_path(&format!(
            "sobjects/{}/{}",
            urlencoding::encode(object),
            urlencoding::encode(id)
        ));
        if let Some(fields) = fields {
            path.push_str("?fields=");
            path.push_str(&urlencoding::encode(&fields.join(",")));
        }
        let (_, body) = self
            .bytes(&Call::new("sobject.get", Auth::Bearer, path))
            .await?;
        let mut de = serde_json::Deserializer::from_slice(&body);
        let pairs = serde::de::DeserializeSeed::deserialize(
            FlatSeed {
                prefix: String::new(),
            },
            &mut de,
        )
        .map_err(|e| Error::protocol(format!("unexpected record: {e}")))?;
        Ok(RecordBuilder::default().build(pairs))
    }

    /// `PATCH /sobjects/{object}/{id}`.
    pub async fn update(&self, object: &str, id: &str, fields: &Map<String, Value>) -> Result<()> {
        let path = self.data_path(&format!(
            "sobjects/{}/{}",
            urlencoding::encode(object),
            urlencoding::encode(id)
        ));
        let call = Call::new("sobject.update", Auth::Bearer, path).json(Method::PATCH, fields)?;
        self.bytes(&call).await.map(|_| ())
    }

    /// `PATCH /sobjects/{object}/{external_id_field}/{value}`.
    pub async fn upsert(
        &self,
        object: &str,
        external_id_field: &str,
        value: &str,
        fields: &Map<String, Value>,
    ) -> Result<UpsertResult> {
        let path = self.data_path(&format!(
            "sobjects/{}/{}/{}",
            urlencoding::encode(object),
            urlencoding::encode(external_id_field),
            urlencoding::encode(value)
        ));
        let call = Call::new("sobject.upsert", Auth::Bearer, path).json(Method::PATCH, fields)?;
        let (_, body) = self.bytes(&call).await?;
        // Before v46 an update of an existing record answers 204 with no body.
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(UpsertResult {
                id: None,
                created: false,
            });
        }
        let result: SaveResult = serde_json::from_slice(&body)
            .map_err(|e| Error::protocol(format!("unexpected upsert answer: {e}")))?;
        if !result.success {
            return Err(save_error(&result.errors));
        }
        Ok(UpsertResult {
            id: result.id,
            created: result.created.unwrap_or(false),
        })
    }

    /// `DELETE /sobjects/{object}/{id}`.
    pub async fn delete(&self, object: &str, id: &str) -> Result<()> {
        let path = self.data_path(&format!(
            "sobjects/{}/{}",
            urlencoding::encode(object),
            urlencoding::encode(id)
        ));
        let mut call = Call::new("sobject.delete", Auth::Bearer, path);
        call.method = Method::DELETE;
        self.bytes(&call).await.map(|_| ())
    }
}

fn check_len(results: &[SaveResult], expected: usize) -> Result<()> {
    if results.len() != expected {
        return Err(Error::protocol(format!(
            "{} results for {expected} records",
            results.len()
        )));
    }
    Ok(())
}

fn save_error(errors: &[SaveError]) -> Error {
    match errors.first() {
        Some(e) => Error::new(
            crate::kind_for_code(&e.status_code).unwrap_or(ErrorKind::Rejected),
            e.message.clone(),
        )
        .with_code(e.status_code.clone()),
        None => Error::protocol("save failed without an error"),
    }
}
