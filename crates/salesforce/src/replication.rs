//! getUpdated / getDeleted, with the safe high-water mark `latestDateCovered`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer};

use crate::error::Result;
use crate::http::{Auth, Call};
use crate::Client;

/// `GET /sobjects/{object}/updated/?start=&end=`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatedResult {
    #[serde(default)]
    pub ids: Vec<String>,
    /// Where the next window must start: at most `end`, and no later than the start of the
    /// oldest transaction still open in the org.
    #[serde(deserialize_with = "sf_datetime")]
    pub latest_date_covered: DateTime<Utc>,
}

/// `GET /sobjects/{object}/deleted/?start=&end=`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedResult {
    #[serde(default)]
    pub deleted_records: Vec<DeletedRecord>,
    /// Deletes before this instant may have been purged: a window starting earlier needs a
    /// full re-read instead.
    #[serde(default, deserialize_with = "sf_datetime_opt")]
    pub earliest_date_available: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "sf_datetime")]
    pub latest_date_covered: DateTime<Utc>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecord {
    pub id: String,
    #[serde(deserialize_with = "sf_datetime")]
    pub deleted_date: DateTime<Utc>,
}

/// Parses `2013-05-08T21:20:00.000+0000` (Salesforce's JSON form) as well as RFC 3339.
pub(crate) fn parse_sf_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn sf_datetime<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    parse_sf_datetime(&s).ok_or_else(|| serde::de::Error::custom(format!("bad datetime {s:?}")))
}

fn sf_datetime_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_sf_datetime(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("bad datetime {s:?}"))),
    }
}

fn window_query(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let fmt = |d: DateTime<Utc>| {
        urlencoding::encode(&d.to_rfc3339_opts(SecondsFormat::Secs, false)).into_owned()
    };
    format!("?start={}&end={}", fmt(start), fmt(end))
}

impl Client {
    /// Ids of records of `object` changed in `[start, end]` (Salesforce truncates to minutes).
    pub async fn get_updated(
        &self,
        object: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<UpdatedResult> {
        let path = self.data_path(&format!(
            "sobjects/{}/updated/{}",
            urlencoding::encode(object),
            window_query(start, end)
        ));
        self.json(&Call::new("get_updated", Auth::Bearer, path).long_running())
            .await
    }

    /// Records of `object` deleted in `[start, end]`.
    pub async fn get_deleted(
        &self,
        object: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<DeletedResult> {
        let path = self.data_path(&format!(
            "sobjects/{}/deleted/{}",
            urlencoding::encode(object),
            window_query(start, end)
        ));
        self.json(&Call::new("get_deleted", Auth::Bearer, path).long_running())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replication_answers() {
        let u: UpdatedResult = serde_json::from_str(
            r#"{"ids":["a00D0000008pQR5IAM"],"latestDateCovered":"2013-05-08T21:20:00.000+0000"}"#,
        )
        .unwrap();
        assert_eq!(
            u.latest_date_covered.to_rfc3339(),
            "2013-05-08T21:20:00+00:00"
        );
        let d: DeletedResult = serde_json::from_str(
            r#"{"deletedRecords":[{"id":"a00D0000008pQRAIA2","deletedDate":"2013-05-07T22:07:19.000+0000"}],
            "earliestDateAvailable":"2013-05-03T15:57:00.000+0000","latestDateCovered":"2013-05-08T21:20:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(d.deleted_records.len(), 1);
        assert!(d.earliest_date_available.is_some());
    }

    #[test]
    fn window_is_url_encoded_utc() {
        let start = parse_sf_datetime("2024-01-02T03:04:05Z").unwrap();
        let q = window_query(start, start);
        assert_eq!(
            q,
            "?start=2024-01-02T03%3A04%3A05%2B00%3A00&end=2024-01-02T03%3A04%3A05%2B00%3A00"
        );
    }
}
