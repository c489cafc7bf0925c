//! One error type with a kind, and the one table that says what a caller does about each kind.
//!
//! Every failure, whatever API produced it (REST JSON arrays, OAuth `{error, error_description}`,
//! Bulk 1.0 XML `<exceptionCode>`, a Bulk batch `stateMessage`, a reset connection), is classified
//! into an [`ErrorKind`]; [`ErrorKind::action`] is the policy table. The client applies the table
//! itself where it can (retries, the one re-authentication, the quota hold) and hands the rest
//! to the caller with the action attached.

use std::fmt;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, at the granularity that decides what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 5xx, timeouts, connection resets, truncated bodies: the same request may well succeed.
    Transient,
    /// `UNABLE_TO_LOCK_ROW`: another transaction holds the row; retry after a pause.
    RowLock,
    /// `QUERY_TIMEOUT` (REST error or Bulk batch `stateMessage`): the window is too big.
    QueryTimeout,
    /// `INVALID_SESSION_ID` / `InvalidSessionId`, still failing after the transparent renewal.
    InvalidSession,
    /// `REQUEST_LIMIT_EXCEEDED` / `ExceededQuota`: the org's API allowance is spent.
    QuotaExceeded,
    /// The login itself was refused: bad password, unknown client id, revoked refresh token.
    Authentication,
    /// `MALFORMED_QUERY`, `INVALID_FIELD`, `INVALID_TYPE` and the like: the request is wrong.
    InvalidRequest,
    /// `NOT_FOUND`, `ENTITY_IS_DELETED`: the record or resource does not exist.
    NotFound,
    /// `INVALID_REPLICATION_DATE`, `EXCEEDED_ID_LIMIT`: getUpdated/getDeleted cannot serve the
    /// window; the caller must re-read the object by query instead.
    ReplicationRange,
    /// A Bulk batch or job failed for a reason other than a query timeout.
    BatchFailed,
    /// Salesforce refused the request for another reason (validation, permissions, 4xx).
    Rejected,
    /// A response this client could not understand, or counts that do not add up.
    Protocol,
    /// The client's own configuration is unusable (CA file, private key, URL).
    Config,
}

/// What the caller should do about an error; see [`ErrorKind::action`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Retry the same request with exponential backoff (the client already did, up to its limit).
    Retry,
    /// Split the time window into smaller ones and read each.
    SplitWindow,
    /// Log in again once (the client already did; a second failure means the credentials died).
    Reauthenticate,
    /// Stop calling this org until the quota recovers; surface the state, never spin.
    WaitForQuota,
    /// Give up: retrying cannot help.
    Fail,
}

impl ErrorKind {
    /// The policy table. Keep it the only place that maps kinds to behaviour.
    pub const fn action(self) -> Action {
        match self {
            ErrorKind::Transient | ErrorKind::RowLock | ErrorKind::BatchFailed => Action::Retry,
            ErrorKind::QueryTimeout => Action::SplitWindow,
            ErrorKind::InvalidSession => Action::Reauthenticate,
            ErrorKind::QuotaExceeded => Action::WaitForQuota,
            ErrorKind::Authentication
            | ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::ReplicationRange
            | ErrorKind::Rejected
            | ErrorKind::Protocol
            | ErrorKind::Config => Action::Fail,
        }
    }

    /// Whether the client's own request loop retries this kind (with backoff).
    pub(crate) const fn retried_by_client(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::RowLock)
    }

    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::RowLock => "row lock",
            ErrorKind::QueryTimeout => "query timeout",
            ErrorKind::InvalidSession => "invalid session",
            ErrorKind::QuotaExceeded => "api quota exceeded",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::NotFound => "not found",
            ErrorKind::ReplicationRange => "replication range",
            ErrorKind::BatchFailed => "bulk batch failed",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Config => "config",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps a Salesforce error code (REST `errorCode`, SaveResult `statusCode`, OAuth `error`,
/// Bulk 1.0 `exceptionCode`) to a kind. `None` when the code alone does not decide.
pub fn kind_for_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "INVALID_SESSION_ID" | "InvalidSessionId" => ErrorKind::InvalidSession,
        "REQUEST_LIMIT_EXCEEDED" | "ExceededQuota" | "TXN_SECURITY_METERING_ERROR" => {
            ErrorKind::QuotaExceeded
        }
        "QUERY_TIMEOUT" => ErrorKind::QueryTimeout,
        "UNABLE_TO_LOCK_ROW" => ErrorKind::RowLock,
        "SERVER_UNAVAILABLE" => ErrorKind::Transient,
        "MALFORMED_QUERY"
        | "INVALID_FIELD"
        | "INVALID_TYPE"
        | "INVALID_QUERY_FILTER_OPERATOR"
        | "MALFORMED_ID"
        | "INVALID_QUERY_LOCATOR"
        | "API_DISABLED_FOR_ORG"
        | "INVALIDENTITY"
        | "InvalidBatch"
        | "InvalidJob"
        | "InvalidEntity"
        | "InvalidUrl"
        | "InvalidOperation"
        | "FeatureNotEnabled"
        | "INVALID_OPERATION"
        | "JSON_PARSER_ERROR"
        | "INVALIDJOB" => ErrorKind::InvalidRequest,
        "NOT_FOUND" | "ENTITY_IS_DELETED" => ErrorKind::NotFound,
        "INVALID_REPLICATION_DATE" | "EXCEEDED_ID_LIMIT" => ErrorKind::ReplicationRange,
        "invalid_grant"
        | "invalid_client_id"
        | "invalid_client"
        | "unauthorized_client"
        | "unsupported_grant_type"
        | "invalid_request"
        | "INVALID_LOGIN"
        | "LOGIN_MUST_USE_SECURITY_TOKEN"
        | "INVALID_AUTH_HEADER" => ErrorKind::Authentication,
        _ => return None,
    })
}

/// Kind for an HTTP status whose body carried no code we recognise.
pub(crate) fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::InvalidSession,
        404 => ErrorKind::NotFound,
        // 406/420/429 are throttling answers peers retry on.
        406 | 408 | 420 | 429 => ErrorKind::Transient,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    }
}

/// The client's error: a kind (which decides the action), the HTTP status and Salesforce code
/// when there were any, and a message that never contains a credential.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    status: Option<u16>,
    code: Option<String>,
    message: String,
    route: Option<&'static str>,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(route) = self.route {
            write!(f, " on {route}")?;
        }
        if let Some(status) = self.status {
            write!(f, " (http {status})")?;
        }
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            status: None,
            code: None,
            message: message.into(),
            route: None,
            retry_after: None,
            source: None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn action(&self) -> Action {
        self.kind.action()
    }

    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The Salesforce error code (`MALFORMED_QUERY`, `invalid_grant`, `InvalidSessionId`, ...).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn route(&self) -> Option<&'static str> {
        self.route
    }

    /// For [`ErrorKind::QuotaExceeded`]: how long the client will refuse calls to this org.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub(crate) fn with_status(mut self, status: u16) -> Error {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_status_opt(mut self, status: Option<u16>) -> Error {
        self.status = status;
        self
    }

    pub(crate) fn with_code(mut self, code: impl Into<String>) -> Error {
        self.code = Some(code.into());
        self
    }

    pub(crate) fn with_route(mut self, route: &'static str) -> Error {
        self.route.get_or_insert(route);
        self
    }

    pub(crate) fn with_retry_after(mut self, after: Duration) -> Error {
        self.retry_after = Some(after);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    /// Classifies a transport failure. reqwest's messages name the URL, which never carries a
    /// credential in this client (tokens travel in headers and form bodies only).
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Error {
        let kind = if err.is_builder() {
            ErrorKind::Config
        } else {
            // Connect, timeout, body and request errors: resets and truncations all land here.
            // A body cut short surfaces as a *decode* error when it passes through the gzip
            // layer, so decode errors are transient too (this client never lets reqwest parse).
            ErrorKind::Transient
        };
        let message = if err.is_timeout() {
            "timed out".to_owned()
        } else if err.is_connect() {
            "connection failed".to_owned()
        } else if err.is_body() || err.is_decode() {
            "response body interrupted".to_owned()
        } else {
            "request failed".to_owned()
        };
        Error::new(kind, message).with_source(err.without_url())
    }

    /// Classifies a non-success HTTP response from its status and (bounded) body. Understands the
    /// REST error array, the OAuth error object, Bulk 1.0 XML errors and Bulk 2.0 arrays.
    pub(crate) fn from_response(status: u16, body: &[u8]) -> Error {
        let text = String::from_utf8_lossy(body);
        let (code, message) = parse_error_body(&text);
        let kind = code
            .as_deref()
            .and_then(kind_for_code)
            .map(|k| adjust_for_status(k, status, code.as_deref()))
            .unwrap_or_else(|| kind_for_status(status));
        let mut err = Error::new(kind, message).with_status(status);
        err.code = code;
        err
    }

    /// Classifies a Bulk batch or job failure from its `stateMessage` / `errorMessage`.
    pub(crate) fn from_bulk_state_message(message: &str) -> Error {
        // A message such as "InvalidBatch : Failed to process query: QUERY_TIMEOUT: ..." names
        // several codes; the most specific one decides.
        let codes: Vec<(&str, ErrorKind)> = message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.len() > 3)
            .filter_map(|w| kind_for_code(w).map(|k| (w, k)))
            .collect();
        let pick = [
            ErrorKind::QueryTimeout,
            ErrorKind::QuotaExceeded,
            ErrorKind::InvalidSession,
        ]
        .iter()
        .find_map(|want| codes.iter().find(|(_, k)| k == want))
        .or_else(|| codes.iter().rev().find(|(w, _)| *w != "InvalidBatch"))
        .or_else(|| codes.first());
        let kind = match pick {
            Some((_, ErrorKind::InvalidRequest)) => ErrorKind::InvalidRequest,
            Some((_, ErrorKind::QueryTimeout)) => ErrorKind::QueryTimeout,
            Some((_, ErrorKind::QuotaExceeded)) => ErrorKind::QuotaExceeded,
            _ if message.contains("Retried more")
                || message.contains("Failed to write query result") =>
            {
                // Salesforce's own wording for a query that kept timing out internally.
                ErrorKind::QueryTimeout
            }
            _ => ErrorKind::BatchFailed,
        };
        let mut err = Error::new(kind, truncate(message, 512));
        err.code = pick.map(|(w, _)| (*w).to_owned());
        err
    }
}

/// A code seen under an unexpected status keeps the code's meaning, except that an OAuth
/// `invalid_request` outside the token endpoint is a plain rejection.
fn adjust_for_status(kind: ErrorKind, status: u16, code: Option<&str>) -> ErrorKind {
    if kind == ErrorKind::Authentication && code == Some("invalid_request") && status != 400 {
        return ErrorKind::Rejected;
    }
    kind
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn parse_error_body(text: &str) -> (Option<String>, String) {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
            let first = match &value {
                serde_json::Value::Array(items) => items.first().cloned().unwrap_or_default(),
                other => other.clone(),
            };
            let field = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| first.get(*n).and_then(|v| v.as_str()).map(str::to_owned))
            };
            let code = field(&["errorCode", "error", "exceptionCode", "statusCode"]);
            let message =
                field(&["message", "error_description", "exceptionMessage"]).unwrap_or_default();
            return (code, truncate(&message, 512));
        }
    }
    if trimmed.starts_with('<') {
        let code = xml_leaf(trimmed, "exceptionCode").or_else(|| xml_leaf(trimmed, "faultcode"));
        let message = xml_leaf(trimmed, "exceptionMessage")
            .or_else(|| xml_leaf(trimmed, "faultstring"))
            .unwrap_or_default();
        let code = code.map(|c| c.rsplit(':').next().unwrap_or(&c).to_owned());
        return (code, truncate(&message, 512));
    }
    (None, truncate(trimmed, 512))
}

/// The text of the first `<tag>` (any namespace prefix) in a small error document.
fn xml_leaf(xml: &str, tag: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let end = after.find('>')?;
        let name = after[..end].split_whitespace().next().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == tag && !name.starts_with('/') {
            let body = &after[end + 1..];
            let close = body.find('<').unwrap_or(body.len());
            return Some(body[..close].trim().to_owned());
        }
        rest = &after[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_array_bodies() {
        let e = Error::from_response(
            401,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidSession);
        assert_eq!(e.code(), Some("INVALID_SESSION_ID"));
        assert_eq!(e.action(), Action::Reauthenticate);

        let e = Error::from_response(
            400,
            br#"[{"message":"\nFROM Account\n^\nERROR at Row:1:Column:8\nunexpected token","errorCode":"MALFORMED_QUERY"}]"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(e.action(), Action::Fail);

        let e = Error::from_response(
            403,
            br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(e.action(), Action::WaitForQuota);

        let e = Error::from_response(
            400,
            br#"[{"message":"Your query request was running for too long.","errorCode":"QUERY_TIMEOUT"}]"#,
        );
        assert_eq!(e.action(), Action::SplitWindow);

        let e = Error::from_response(
            400,
            br#"[{"fields":["Id"],"message":"x","errorCode":"INVALID_FIELD"}]"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);

        let e = Error::from_response(
            400,
            br#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]"#,
        );
        assert_eq!(e.action(), Action::Retry);
    }

    #[test]
    fn oauth_bodies() {
        let e = Error::from_response(
            400,
            br#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Authentication);
        assert_eq!(
            e.to_string(),
            "authentication failed (http 400): invalid_grant: authentication failure"
        );
    }

    #[test]
    fn bulk_v1_xml_bodies() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?><error xmlns="http://www.force.com/2009/06/asyncapi/dataload"><exceptionCode>InvalidSessionId</exceptionCode><exceptionMessage>Invalid session id</exceptionMessage></error>"#;
        let e = Error::from_response(400, body);
        assert_eq!(e.kind(), ErrorKind::InvalidSession);
        assert_eq!(e.message(), "Invalid session id");
    }

    #[test]
    fn status_only_bodies() {
        assert_eq!(
            Error::from_response(503, b"Service Unavailable").kind(),
            ErrorKind::Transient
        );
        assert_eq!(Error::from_response(500, b"").action(), Action::Retry);
        assert_eq!(Error::from_response(418, b"").action(), Action::Fail);
    }

    #[test]
    fn bulk_state_messages() {
        let e = Error::from_bulk_state_message(
            "InvalidBatch : QUERY_TIMEOUT: Your query request was running for too long.",
        );
        assert_eq!(e.kind(), ErrorKind::QueryTimeout);
        let e = Error::from_bulk_state_message("Retried more than 15 times");
        assert_eq!(e.kind(), ErrorKind::QueryTimeout);
        let e = Error::from_bulk_state_message("InternalServerError : something broke");
        assert_eq!(e.kind(), ErrorKind::BatchFailed);
        let e = Error::from_bulk_state_message(
            "InvalidBatch : Failed to process query: MALFORMED_QUERY: unexpected token",
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn every_kind_has_an_action() {
        use ErrorKind::*;
        let table = [
            (Transient, Action::Retry),
            (RowLock, Action::Retry),
            (QueryTimeout, Action::SplitWindow),
            (InvalidSession, Action::Reauthenticate),
            (QuotaExceeded, Action::WaitForQuota),
            (Authentication, Action::Fail),
            (InvalidRequest, Action::Fail),
            (NotFound, Action::Fail),
            (ReplicationRange, Action::Fail),
            (BatchFailed, Action::Retry),
            (Rejected, Action::Fail),
            (Protocol, Action::Fail),
            (Config, Action::Fail),
        ];
        for (kind, action) in table {
            assert_eq!(kind.action(), action, "{kind}");
        }
    }
}
