//! Request execution: the retry loop that applies the error policy table, the one transparent
//! re-authentication, the quota hold, `Sforce-Limit-Info` accounting, the per-org cap on
//! concurrent long-running requests, and one tracing span per call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{field, Instrument, Span};

use crate::auth::{Token, TokenCache};
use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result};
use crate::usage::UsageTracker;
use crate::ClientConfig;

/// Error bodies are read up to this size; the rest is of no use for classification.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How a call authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The token endpoint itself.
    None,
    /// `Authorization: Bearer` (REST, Bulk 2.0).
    Bearer,
    /// `X-SFDC-Session` (Bulk 1.0).
    Session,
}

pub(crate) enum Target {
    /// A path (and query) on the instance URL of the current token.
    Instance(String),
    /// A full URL (the login host).
    Absolute(String),
}

/// One logical API call; attempts are built from it afresh, so it can be retried.
pub(crate) struct Call {
    pub method: Method,
    pub target: Target,
    /// A stable route name for logs and errors (`query`, `bulk_v1.result`, ...).
    pub route: &'static str,
    pub auth: Auth,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<(Bytes, &'static str)>,
    /// Safe to send twice. Non-idempotent calls are resent only when the server cannot have
    /// acted on them (connection refused, 503, 429).
    pub idempotent: bool,
    /// Counts against the org's cap on concurrent long-running requests while its body is read.
    pub long_running: bool,
}

impl Call {
    /// A GET on the instance; `with_body` and `json` turn it into a POST, PATCH, ...
    pub fn new(route: &'static str, auth: Auth, path: String) -> Call {
        Call {
            method: Method::GET,
            target: Target::Instance(path),
            route,
            auth,
            headers: Vec::new(),
            body: None,
            idempotent: true,
            long_running: false,
        }
    }

    pub fn with_body(
        mut self,
        method: Method,
        body: impl Into<Bytes>,
        content_type: &'static str,
    ) -> Call {
        self.method = method;
        self.body = Some((body.into(), content_type));
        self
    }

    pub fn json(self, method: Method, value: &impl serde::Serialize) -> Result<Call> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::protocol("cannot encode request").with_source(e))?;
        Ok(self.with_body(method, body, "application/json"))
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Call {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn long_running(mut self) -> Call {
        self.long_running = true;
        self
    }

    pub fn not_idempotent(mut self) -> Call {
        self.idempotent = false;
        self
    }
}

/// Timing settings copied out of [`ClientConfig`].
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub request_timeout: Duration,
    pub retry: Backoff,
    pub quota_hold: Duration,
    pub max_long_running: usize,
}

pub(crate) struct Http {
    client: reqwest::Client,
    pub settings: Settings,
    pub usage: UsageTracker,
}

/// A successful response whose body has not been read yet. It holds the long-running permit
/// and the call's span until the body is consumed or dropped.
pub(crate) struct Response {
    inner: reqwest::Response,
    _permit: Option<OwnedSemaphorePermit>,
    span: Span,
    started: Instant,
    bytes: u64,
    finished: bool,
}

impl Http {
    pub fn new(cfg: &ClientConfig) -> Result<Http> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("driftless-salesforce/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_cert {
            for cert in read_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| Error::config("cannot build http client").with_source(e))?;
        Ok(Http {
            client,
            settings: Settings {
                request_timeout: cfg.request_timeout,
                retry: cfg.retry,
                quota_hold: cfg.quota_hold,
                max_long_running: cfg.max_long_running.max(1),
            },
            usage: UsageTracker::default(),
        })
    }

    /// Sends `call` until it succeeds or the policy table says stop. Returns once the response
    /// headers arrived; the body is the caller's to read.
    pub async fn execute(&self, call: &Call, tokens: Option<&TokenCache>) -> Result<Response> {
        let span = tracing::info_span!(
            "sf.call",
            route = call.route,
            method = %call.method,
            status = field::Empty,
            attempt = field::Empty,
            records = field::Empty,
            bytes = field::Empty,
            latency_ms = field::Empty,
        );
        self.execute_in(call, tokens, span.clone())
            .instrument(span)
            .await
    }

    async fn execute_in(
        &self,
        call: &Call,
        tokens: Option<&TokenCache>,
        span: Span,
    ) -> Result<Response> {
        let started = Instant::now();
        let mut retry = 0u32;
        let mut renewed = false;
        loop {
            if let Some(left) = self.usage.quota_hold_remaining() {
                return Err(Error::new(
                    ErrorKind::QuotaExceeded,
                    "api quota exhausted; calls held back",
                )
                .with_route(call.route)
                .with_retry_after(left));
            }
            let token = match (call.auth, tokens) {
                (Auth::None, _) => None,
                (_, Some(tokens)) => Some(tokens.token(self).await?),
                (_, None) => return Err(Error::config("call needs a token")),
            };
            let permit = match (&token, call.long_running) {
                (Some(token), true) => Some(
                    org_limiter(&token.org_key(), self.settings.max_long_running)
                        .acquire_owned()
                        .await
                        .map_err(|_| Error::config("limiter closed"))?,
                ),
                _ => None,
            };
            span.record("attempt", retry + 1);
            let (err, resendable) = match self.attempt(call, token.as_deref()).await {
                Ok(resp) => {
                    span.record("status", resp.status().as_u16());
                    return Ok(Response {
                        inner: resp,
                        _permit: permit,
                        span,
                        started,
                        bytes: 0,
                        finished: false,
                    });
                }
                Err(failure) => {
                    // Not held through the backoff: other requests may use the slot meanwhile.
                    drop(permit);
                    failure
                }
            };
            self.usage.count_failure();
            let err = err.with_route(call.route);
            if let Some(status) = err.status() {
                span.record("status", status);
            }
            match err.kind() {
                ErrorKind::InvalidSession if !renewed && call.auth != Auth::None => {
                    if let (Some(tokens), Some(stale)) = (tokens, &token) {
                        tracing::debug!("session invalid; logging in again");
                        renewed = true;
                        tokens.renew(self, stale).await?;
                        continue;
                    }
                    return Err(err);
                }
                ErrorKind::QuotaExceeded => {
                    // Every further call would also be refused and would only burn what little
                    // quota comes back; hold the whole connection instead of spinning.
                    self.usage.hold_for_quota(self.settings.quota_hold);
                    tracing::warn!(error = %err, hold_secs = self.settings.quota_hold.as_secs(), "api quota exhausted");
                    return Err(err.with_retry_after(self.settings.quota_hold));
                }
                kind if kind.retried_by_client()
                    && retry + 1 < self.settings.retry.max_attempts
                    && (call.idempotent || resendable) =>
                {
                    let delay = self.settings.retry.delay(retry);
                    tracing::warn!(error = %err, retry = retry + 1, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                _ => {
                    span.record("latency_ms", started.elapsed().as_millis() as u64);
                    tracing::debug!(error = %err, "call failed");
                    return Err(err);
                }
            }
        }
    }

    /// One attempt. On failure also says whether the server cannot have acted on the request.
    async fn attempt(
        &self,
        call: &Call,
        token: Option<&Token>,
    ) -> Result<reqwest::Response, (Error, bool)> {
        let url = match (&call.target, token) {
            (Target::Absolute(url), _) => url.clone(),
            (Target::Instance(path), Some(token)) => format!("{}{}", token.instance_url, path),
            (Target::Instance(_), None) => {
                return Err((Error::config("instance call without a token"), false))
            }
        };
        let mut req = self.client.request(call.method.clone(), url);
        for (name, value) in &call.headers {
            req = req.header(name, value);
        }
        if let Some(token) = token {
            let (name, value) = match call.auth {
                Auth::Bearer => (
                    "authorization",
                    format!("Bearer {}", token.access_token.expose()),
                ),
                _ => ("x-sfdc-session", token.access_token.expose().to_owned()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                (
                    Error::protocol("access token is not a valid header value"),
                    false,
                )
            })?;
            // Keeps the token out of any header dump a lower layer might log.
            value.set_sensitive(true);
            req = req.header(name, value);
        }
        if let Some((body, content_type)) = &call.body {
            req = req.header(CONTENT_TYPE, *content_type).body(body.clone());
        }
        self.usage.count_call();
        let sent = tokio::time::timeout(self.settings.request_timeout, req.send()).await;
        let resp = match sent {
            Err(_) => {
                return Err((
                    Error::new(ErrorKind::Transient, "timed out waiting for response"),
                    false,
                ))
            }
            Ok(Err(e)) => {
                let refused = e.is_connect();
                return Err((Error::from_reqwest(e), refused));
            }
            Ok(Ok(resp)) => resp,
        };
        if let Some(info) = resp
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
        {
            self.usage.observe_limit_info(info);
        }
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        let body = read_bounded(resp, MAX_ERROR_BODY).await;
        self.usage.count_bytes(body.len() as u64);
        let resendable = matches!(status, 429 | 503);
        Err((Error::from_response(status, &body), resendable))
    }

    /// Executes and reads the whole body, retrying the call when the body is cut off. Only for
    /// responses whose size is bounded (a REST page, a job document).
    pub async fn execute_bytes(
        &self,
        call: &Call,
        tokens: Option<&TokenCache>,
    ) -> Result<(HeaderMap, Bytes)> {
        self.execute_bytes_in_span(call, tokens)
            .await
            .map(|(headers, body, _)| (headers, body))
    }

    /// As [`Http::execute_bytes`], also returning the call's span so the caller can record
    /// what the body held (`records`).
    pub async fn execute_bytes_in_span(
        &self,
        call: &Call,
        tokens: Option<&TokenCache>,
    ) -> Result<(HeaderMap, Bytes, Span)> {
        let mut retry = 0u32;
        loop {
            let mut resp = self.execute(call, tokens).await?;
            let headers = resp.headers().clone();
            match resp.read_all().await {
                Ok(body) => {
                    resp.finish(None);
                    return Ok((headers, body, resp.span.clone()));
                }
                Err(err)
                    if err.kind().retried_by_client()
                        && call.idempotent
                        && retry + 1 < self.settings.retry.max_attempts =>
                {
                    let delay = self.settings.retry.delay(retry);
                    tracing::warn!(route = call.route, error = %err, "body interrupted; retrying");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                Err(err) => return Err(err.with_route(call.route)),
            }
        }
    }

    pub async fn execute_json<T: serde::de::DeserializeOwned>(
        &self,
        call: &Call,
        tokens: Option<&TokenCache>,
    ) -> Result<T> {
        let (_, body) = self.execute_bytes(call, tokens).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::protocol(format!("unexpected response: {e}")).with_route(call.route)
        })
    }

    pub fn usage(&self) -> &UsageTracker {
        &self.usage
    }
}

impl Response {
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The next body chunk; `None` at the end.
    pub async fn chunk(&mut self, usage: &UsageTracker) -> Result<Option<Bytes>> {
        match self.inner.chunk().await {
            Ok(Some(chunk)) => {
                self.bytes += chunk.len() as u64;
                usage.count_bytes(chunk.len() as u64);
                Ok(Some(chunk))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Error::from_reqwest(e)),
        }
    }

    async fn read_all(&mut self) -> Result<Bytes> {
        let mut buf = Vec::new();
        while let Some(chunk) = self.inner.chunk().await.map_err(Error::from_reqwest)? {
            buf.extend_from_slice(&chunk);
        }
        self.bytes = buf.len() as u64;
        Ok(buf.into())
    }

    /// Records the call's outcome on its span and logs one line for it.
    pub fn finish(&mut self, records: Option<u64>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let latency = self.started.elapsed().as_millis() as u64;
        self.span.record("bytes", self.bytes);
        self.span.record("latency_ms", latency);
        if let Some(records) = records {
            self.span.record("records", records);
        }
        let _enter = self.span.enter();
        tracing::debug!(
            bytes = self.bytes,
            latency_ms = latency,
            records,
            "call finished"
        );
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        if !self.finished {
            let _enter = self.span.enter();
            tracing::trace!(bytes = self.bytes, "response dropped before its end");
        }
    }
}

async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= max {
            break;
        }
    }
    buf
}

fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::config(format!("cannot read ca_cert {}", path.display())).with_source(e)
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        Error::config(format!("ca_cert {} is not PEM", path.display())).with_source(e)
    })?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "ca_cert {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Salesforce caps concurrent long-running requests per org, not per connection, so every
/// connection to the same org in this process shares one semaphore.
fn org_limiter(org_key: &str, capacity: usize) -> Arc<Semaphore> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    let map = LIMITERS.get_or_init(Default::default);
    map.lock()
        .entry(org_key.to_owned())
        .or_insert_with(|| Arc::new(Semaphore::new(capacity)))
        .clone()
}

/// Permits currently free for an org (for tests and diagnostics).
pub(crate) fn org_permits_available(org_key: &str, capacity: usize) -> usize {
    org_limiter(org_key, capacity).available_permits()
}
