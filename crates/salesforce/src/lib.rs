//! The Salesforce API client of Driftless.
//!
//! A [`Client`] is one connection to one org: it logs in with any of the OAuth2 flows in
//! [`Credentials`], shares the token among all its requests and renews it once, transparently,
//! when Salesforce says the session is invalid. Reads come back as streams of [`Record`]s that
//! never hold more than a page (REST) or a network chunk (Bulk CSV) in memory; a page that fails
//! midway is fetched again by its `nextRecordsUrl`, locator or result id, skipping what was
//! already yielded, so a retried stream neither duplicates nor skips records.
//!
//! Every failure is an [`Error`] with an [`ErrorKind`]; [`ErrorKind::action`] is the one table
//! that says what to do about it. The client retries transient failures itself (exponential
//! backoff with jitter and a cap) and hands the caller what is left: split the window, wait for
//! quota, or give up.
//!
//! Secrets live in [`Secret`]s and never reach `Debug` output, errors or logs.
//!
//! ```no_run
//! # async fn demo() -> salesforce::Result<()> {
//! use futures::StreamExt;
//! use salesforce::{Action, Client, ClientConfig, Credentials, QueryOperation, Secret};
//!
//! let credentials = Credentials::Password {
//!     username: "admin@driftless.sim".into(),
//!     password: Secret::new("driftless"),
//!     client_id: "driftless-sim".into(),
//!     client_secret: Secret::new("driftless-sim-secret"),
//! };
//! let client = Client::connect(ClientConfig::new("http://127.0.0.1:8443", credentials)).await?;
//!
//! // One Bulk 1.0 job, one batch per sub-window, each batch streamed on its own.
//! let windows = vec![
//!     "SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp >= 2026-01-01T00:00:00Z AND SystemModstamp < 2026-01-01T01:00:00Z".to_owned(),
//!     "SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp >= 2026-01-01T01:00:00Z AND SystemModstamp < 2026-01-01T02:00:00Z".to_owned(),
//! ];
//! let job = client.bulk_v1_query("Account", QueryOperation::QueryAll, &windows, &Default::default()).await?;
//! for batch in job.batches() {
//!     let mut records = job.stream_batch(&batch.id);
//!     while let Some(record) = records.next().await {
//!         match record {
//!             Ok(record) => println!("{:?} {:?}", record.id(), record.get("Name")),
//!             Err(e) if e.action() == Action::SplitWindow => { /* re-plan smaller windows */ }
//!             Err(e) => return Err(e),
//!         }
//!     }
//! }
//! println!("{:?}", client.usage().api_usage);
//! # Ok(()) }
//! ```

mod auth;
mod backoff;
mod bulk_ingest;
mod bulk_v1;
mod bulk_v2;
mod composite;
mod csv_stream;
mod describe;
mod error;
mod http;
mod paged_csv;
mod pubsub;
mod query;
mod record;
mod replication;
mod secret;
mod usage;
mod xml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use auth::{Credentials, PrivateKey};
pub use backoff::{Backoff, PollSchedule};
pub use bulk_ingest::{
    Cell, IngestCsv, IngestJob, IngestJobInfo, IngestOperation, IngestReport, RowOutcome,
};
pub use bulk_v1::{BatchInfo, BatchState, BulkV1Job, BulkV1Options};
pub use bulk_v2::{BulkV2Job, BulkV2JobInfo};
pub use composite::{SObject, SaveError, SaveResult, UpsertResult};
pub use describe::{
    FieldDescribe, FieldType, GlobalDescribe, PicklistValue, SObjectDescribe, SObjectSummary,
};
pub use error::{kind_for_code, Action, Error, ErrorKind, Result};
pub use pubsub::{
    change_event_topic, Batch, ChangeEvent, ChangeType, PubSubConfig, ReplayFrom, Subscriber,
    SubscriberStats, ALL_CHANGE_EVENTS, DEFAULT_PUBSUB_ENDPOINT,
};
pub use record::Record;
pub use replication::{DeletedRecord, DeletedResult, UpdatedResult};
pub use secret::Secret;
pub use usage::{parse_limit_info, Limit, Usage, UsageSnapshot};

use auth::TokenCache;
use http::{Auth, Call, Http};

/// A stream of records. Ends after the last record or after the first error it yields.
pub type RecordStream = Pin<Box<dyn futures::Stream<Item = Result<Record>> + Send>>;

/// Ends `stream` after the first error it yields, so a chain of streams keeps the
/// [`RecordStream`] contract.
pub(crate) fn stop_after_error(stream: RecordStream) -> RecordStream {
    Box::pin(futures::stream::unfold(
        (stream, false),
        |(mut stream, failed)| async move {
            if failed {
                return None;
            }
            let item = futures::StreamExt::next(&mut stream).await?;
            let failed = item.is_err();
            Some((item, (stream, failed)))
        },
    ))
}

/// `query` reads live records; `queryAll` also returns deleted and archived ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryOperation {
    Query,
    QueryAll,
}

impl QueryOperation {
    fn as_str(self) -> &'static str {
        match self {
            QueryOperation::Query => "query",
            QueryOperation::QueryAll => "queryAll",
        }
    }
}

/// Everything a connection needs. [`ClientConfig::new`] fills in production defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://login.salesforce.com`, a My Domain, or the simulator's `login_url`.
    pub login_url: String,
    pub credentials: Credentials,
    /// Without the `v`, e.g. `62.0`.
    pub api_version: String,
    /// An extra trusted root (PEM, may hold several certificates) on top of the platform's.
    pub ca_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Longest wait for response headers.
    pub request_timeout: Duration,
    /// Longest silence while reading a body.
    pub read_timeout: Duration,
    pub retry: Backoff,
    /// How often Bulk job and batch state is polled.
    pub poll: PollSchedule,
    /// Longest wait for a Bulk job or batch to finish.
    pub bulk_timeout: Duration,
    /// How long the connection refuses calls after `REQUEST_LIMIT_EXCEEDED`.
    pub quota_hold: Duration,
    /// Concurrent long-running requests per org (Salesforce allows 25).
    pub max_long_running: usize,
    /// `Sforce-Query-Options: batchSize` for REST queries (200..=2000); `None` lets the server pick.
    pub rest_batch_size: Option<u32>,
    /// `maxRecords` per Bulk 2.0 result page.
    pub bulk_v2_page_size: u32,
    /// Check streamed row counts against `Sforce-NumberOfRecords` and `numberRecordsProcessed`.
    pub verify_counts: bool,
}

impl ClientConfig {
    pub fn new(login_url: impl Into<String>, credentials: Credentials) -> ClientConfig {
        ClientConfig {
            login_url: login_url.into(),
            credentials,
            api_version: "62.0".to_owned(),
            ca_cert: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(120),
            retry: Backoff::default(),
            poll: PollSchedule::default(),
            bulk_timeout: Duration::from_secs(24 * 3600),
            quota_hold: Duration::from_secs(300),
            max_long_running: 25,
            rest_batch_size: None,
            bulk_v2_page_size: 50_000,
            verify_counts: true,
        }
    }
}

/// One connection to one org. Cheap to clone; clones share the token, the usage counters and
/// the quota state.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    tokens: TokenCache,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("login_url", &self.inner.config.login_url)
            .field("api_version", &self.inner.config.api_version)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client without logging in; the first call logs in.
    pub fn new(config: ClientConfig) -> Result<Client> {
        let http = Http::new(&config)?;
        let tokens = TokenCache::new(&config.login_url, config.credentials.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                tokens,
                config,
            }),
        })
    }

    /// Builds the client and logs in, so bad credentials show up here.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let client = Client::new(config)?;
        client.inner.tokens.token(&client.inner.http).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn api_version(&self) -> &str {
        &self.inner.config.api_version
    }

    /// The instance URL of the current session (logs in if needed).
    pub async fn instance_url(&self) -> Result<String> {
        Ok(self
            .inner
            .tokens
            .token(&self.inner.http)
            .await?
            .instance_url
            .clone())
    }

    /// The 18-character org id of the current session (logs in if needed).
    pub async fn org_id(&self) -> Result<String> {
        Ok(self
            .inner
            .tokens
            .token(&self.inner.http)
            .await?
            .org_id
            .clone())
    }

    /// The user id of the current session (logs in if needed).
    pub async fn user_id(&self) -> Result<String> {
        Ok(self
            .inner
            .tokens
            .token(&self.inner.http)
            .await?
            .user_id
            .clone())
    }

    /// The current access token, for APIs this client does not wrap (e.g. Pub/Sub). It stays
    /// a [`Secret`]: log it and you get `***`.
    pub async fn access_token(&self) -> Result<Secret> {
        Ok(self
            .inner
            .tokens
            .token(&self.inner.http)
            .await?
            .access_token
            .clone())
    }

    /// The current session (logs in if needed).
    pub(crate) async fn session(&self) -> Result<Arc<auth::Token>> {
        self.inner.tokens.token(&self.inner.http).await
    }

    /// Replaces `stale` with a fresh session, unless another caller already did: the one
    /// renewal every API of this connection shares.
    pub(crate) async fn renew_session(&self, stale: &Arc<auth::Token>) -> Result<Arc<auth::Token>> {
        self.inner.tokens.renew(&self.inner.http, stale).await
    }

    /// Successful logins so far (the first one plus every renewal).
    pub fn logins(&self) -> u64 {
        self.inner.tokens.logins()
    }

    /// API usage as seen by this connection.
    pub fn usage(&self) -> UsageSnapshot {
        self.inner.http.usage().snapshot()
    }

    /// Lifts the quota hold early, e.g. after `/limits` shows the allowance came back.
    pub fn clear_quota_hold(&self) {
        self.inner.http.usage().clear_quota_hold()
    }

    /// Free slots for long-running requests to this org in this process.
    pub async fn long_running_slots_available(&self) -> Result<usize> {
        let token = self.inner.tokens.token(&self.inner.http).await?;
        Ok(http::org_permits_available(
            &token.org_key(),
            self.inner.http.settings.max_long_running,
        ))
    }

    /// `GET /limits`: every limit with Max/Remaining; also updates [`Client::usage`].
    pub async fn limits(&self) -> Result<BTreeMap<String, Limit>> {
        let call = Call::new("limits", Auth::Bearer, self.data_path("limits/"));
        let raw: BTreeMap<String, serde_json::Value> = self.json(&call).await?;
        let limits: BTreeMap<String, Limit> = raw
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_value::<Limit>(v).ok().map(|l| (k, l)))
            .collect();
        self.inner.http.usage().observe_limits(limits.clone());
        Ok(limits)
    }

    pub(crate) fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}/{}", self.inner.config.api_version, rest)
    }

    pub(crate) fn async_path(&self, rest: &str) -> String {
        format!("/services/async/{}/{}", self.inner.config.api_version, rest)
    }

    pub(crate) async fn execute(&self, call: &Call) -> Result<http::Response> {
        self.inner
            .http
            .execute(call, Some(&self.inner.tokens))
            .await
    }

    pub(crate) async fn bytes(
        &self,
        call: &Call,
    ) -> Result<(reqwest::header::HeaderMap, bytes::Bytes)> {
        self.inner
            .http
            .execute_bytes(call, Some(&self.inner.tokens))
            .await
    }

    pub(crate) async fn bytes_in_span(
        &self,
        call: &Call,
    ) -> Result<(reqwest::header::HeaderMap, bytes::Bytes, tracing::Span)> {
        self.inner
            .http
            .execute_bytes_in_span(call, Some(&self.inner.tokens))
            .await
    }

    pub(crate) async fn json<T: serde::de::DeserializeOwned>(&self, call: &Call) -> Result<T> {
        self.inner
            .http
            .execute_json(call, Some(&self.inner.tokens))
            .await
    }

    pub(crate) fn usage_tracker(&self) -> &usage::UsageTracker {
        self.inner.http.usage()
    }

    pub(crate) fn retry_policy(&self) -> Backoff {
        self.inner.config.retry
    }
}
