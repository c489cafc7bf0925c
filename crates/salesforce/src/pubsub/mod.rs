//! A Pub/Sub API subscriber (`eventbus.v1.PubSub/Subscribe`) for change events.
//!
//! One [`Subscriber`] holds one topic's stream open: it asks for events with flow control
//! (`num_requested`, topped up as they arrive), starts from a stored replay id (CUSTOM) or at
//! LATEST, reconnects with backoff from the last replay id it handed out after a stream reset
//! or a transport error, renews the connection's session once when the token expired (the
//! same token cache as the REST calls), and decodes each event's header against the schema its
//! `schema_id` names (fetched once per id). The token travels only in gRPC metadata; nothing
//! here logs it.

mod event;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use driftless_pubsub_proto::pub_sub_client::PubSubClient;
use driftless_pubsub_proto::{
    FetchRequest, FetchResponse, ReplayPreset, SchemaRequest, TopicRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status, Streaming};

pub use event::{ChangeEvent, ChangeType};

use crate::auth::Token;
use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result};
use crate::Client;

/// Salesforce's Pub/Sub API endpoint.
pub const DEFAULT_PUBSUB_ENDPOINT: &str = "api.pubsub.salesforce.com:7443";

/// `/data/ChangeEvents`: every entity selected for Change Data Capture, one stream.
pub const ALL_CHANGE_EVENTS: &str = "/data/ChangeEvents";

/// The change-event topic of one object: `/data/AccountChangeEvent`, `/data/X__ChangeEvent`.
pub fn change_event_topic(object: &str) -> String {
    match object.strip_suffix("__c") {
        Some(base) => format!("/data/{base}__ChangeEvent"),
        None => format!("/data/{object}ChangeEvent"),
    }
}

#[derive(Clone, Debug)]
pub struct PubSubConfig {
    /// `host:port`, TLS always; the connection's `ca_cert` is trusted on top of the platform's.
    pub endpoint: String,
    /// Events requested ahead (Salesforce serves at most 100 per request).
    pub num_requested: i32,
    /// Delays between reconnects; the count starts over after a response arrives.
    pub reconnect: Backoff,
    /// A stream silent for this long is taken for dead (Salesforce sends a keepalive within
    /// 270 s).
    pub idle_timeout: Duration,
}

impl PubSubConfig {
    pub fn new(endpoint: impl Into<String>) -> PubSubConfig {
        PubSubConfig {
            endpoint: endpoint.into(),
            num_requested: 100,
            reconnect: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(60),
                max_attempts: u32::MAX,
            },
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Where a subscription starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Only events published from now on.
    Latest,
    /// The events after this replay id (one a [`Batch`] handed out earlier).
    After(Vec<u8>),
}

/// One FetchResponse: its events (possibly none, for a keepalive) and the replay id to resume
/// after once they are processed.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<ChangeEvent>,
    pub latest_replay_id: Vec<u8>,
}

/// Reconnects and renewals so far, for status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    pub connects: u64,
    pub session_renewals: u64,
}

struct Open {
    requests: mpsc::Sender<FetchRequest>,
    responses: Streaming<FetchResponse>,
    /// Credit the server still holds.
    pending: i32,
}

pub struct Subscriber {
    client: Client,
    config: PubSubConfig,
    topic: String,
    from: ReplayFrom,
    grpc: Option<PubSubClient<Channel>>,
    open: Option<Open>,
    schemas: HashMap<String, Arc<apache_avro::Schema>>,
    failures: u32,
    /// The token renewed after the last refusal: a second refusal with it is final.
    renewed: Option<Arc<Token>>,
    stats: SubscriberStats,
}

impl Subscriber {
    pub fn new(
        client: Client,
        config: PubSubConfig,
        topic: impl Into<String>,
        from: ReplayFrom,
    ) -> Subscriber {
        Subscriber {
            client,
            config,
            topic: topic.into(),
            from,
            grpc: None,
            open: None,
            schemas: HashMap::new(),
            failures: 0,
            renewed: None,
            stats: SubscriberStats::default(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// Where a reconnect would resume now.
    pub fn position(&self) -> &ReplayFrom {
        &self.from
    }

    /// The next response. Transient failures (stream resets, unavailable, timeouts) are
    /// retried here with backoff, from the last replay id handed out; what comes back as an
    /// error cannot be retried as is: [`ErrorKind::NotFound`] (no such topic),
    /// [`ErrorKind::ReplicationRange`] (the replay id is older than retention or unknown),
    /// [`ErrorKind::InvalidSession`] (refused after the renewal), configuration errors.
    pub async fn next(&mut self) -> Result<Batch> {
        loop {
            match self.try_next().await {
                Ok(batch) => {
                    self.advance(&batch);
                    return Ok(batch);
                }
                Err(e) => {
                    self.open = None;
                    match e.kind() {
                        ErrorKind::InvalidSession => self.renew().await?,
                        kind if kind.retried_by_client() => {
                            let delay = self.config.reconnect.delay(self.failures);
                            self.failures = self.failures.saturating_add(1);
                            tracing::debug!(topic = %self.topic, error = %e, retry_in_ms = delay.as_millis() as u64, "pub/sub stream ended; reconnecting");
                            if self.failures > 3 {
                                // A reconnect may need a fresh TLS connection, not just a stream.
                                self.grpc = None;
                            }
                            tokio::time::sleep(delay).await;
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// The next response if it has already arrived, without waiting, so a caller can gather a
    /// burst into one read. `None` when nothing is buffered, or when the stream ended (the next
    /// [`Subscriber::next`] reconnects).
    pub async fn next_ready(&mut self) -> Option<Result<Batch>> {
        let open = self.open.as_mut()?;
        // `message` keeps no state of its own between polls, so dropping it when it is pending
        // loses nothing.
        match futures::FutureExt::now_or_never(open.responses.message())? {
            Ok(Some(response)) => {
                let batch = self.handle(response).await;
                if let Ok(b) = &batch {
                    self.advance(b);
                }
                Some(batch)
            }
            Ok(None) | Err(_) => {
                self.open = None;
                None
            }
        }
    }

    fn advance(&mut self, batch: &Batch) {
        self.failures = 0;
        if let Some(id) = batch.events.last().map(|e| e.replay_id.clone()) {
            self.from = ReplayFrom::After(id);
        }
        if !batch.latest_replay_id.is_empty() {
            self.from = ReplayFrom::After(batch.latest_replay_id.clone());
        }
    }

    async fn try_next(&mut self) -> Result<Batch> {
        if self.open.is_none() {
            self.open = Some(self.subscribe().await?);
        }
        let idle = self.config.idle_timeout;
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| Error::protocol("no stream"))?;
        let response = match tokio::time::timeout(idle, open.responses.message()).await {
            Err(_) => return Err(Error::new(ErrorKind::Transient, "pub/sub stream silent")),
            Ok(Err(status)) => return Err(from_status(&status)),
            Ok(Ok(None)) => return Err(Error::new(ErrorKind::Transient, "pub/sub stream ended")),
            Ok(Ok(Some(r))) => r,
        };
        self.handle(response).await
    }

    /// Tops the credit up and decodes the events of one response.
    async fn handle(&mut self, response: FetchResponse) -> Result<Batch> {
        self.renewed = None;
        let n = self.config.num_requested.max(1);
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| Error::protocol("no stream"))?;
        open.pending = response.pending_num_requested;
        if open.pending <= n / 2 {
            let more = n - open.pending;
            let request = FetchRequest {
                num_requested: more,
                ..Default::default()
            };
            if open.requests.send(request).await.is_ok() {
                open.pending += more;
            }
        }
        let mut events = Vec::with_capacity(response.events.len());
        for consumer in response.events {
            let Some(produced) = consumer.event else {
                continue;
            };
            let schema = self.schema(&produced.schema_id).await?;
            events.push(event::decode(
                &schema,
                &produced.payload,
                consumer.replay_id,
            )?);
        }
        Ok(Batch {
            events,
            latest_replay_id: response.latest_replay_id,
        })
    }

    async fn subscribe(&mut self) -> Result<Open> {
        let n = self.config.num_requested.max(1);
        let first = match &self.from {
            ReplayFrom::Latest => FetchRequest {
                topic_name: self.topic.clone(),
                replay_preset: ReplayPreset::Latest as i32,
                num_requested: n,
                ..Default::default()
            },
            ReplayFrom::After(id) => FetchRequest {
                topic_name: self.topic.clone(),
                replay_preset: ReplayPreset::Custom as i32,
                replay_id: id.clone(),
                num_requested: n,
                ..Default::default()
            },
        };
        let (requests, rx) = mpsc::channel(4);
        requests
            .send(first)
            .await
            .map_err(|_| Error::protocol("request channel closed"))?;
        let request = self.request(ReceiverStream::new(rx)).await?;
        let mut grpc = self.grpc().await?;
        let responses = grpc
            .subscribe(request)
            .await
            .map_err(|s| from_status(&s))?
            .into_inner();
        self.stats.connects += 1;
        tracing::debug!(topic = %self.topic, "pub/sub stream open");
        Ok(Open {
            requests,
            responses,
            pending: n,
        })
    }

    /// Whether `topic` exists for this org (GetTopic): `Ok(false)` when Salesforce answers
    /// NOT_FOUND, as it does for an object without Change Data Capture.
    pub async fn topic_exists(&mut self, topic: &str) -> Result<bool> {
        for attempt in 0..2 {
            let request = self
                .request(TopicRequest {
                    topic_name: topic.to_owned(),
                })
                .await?;
            match self.grpc().await?.get_topic(request).await {
                Ok(_) => return Ok(true),
                Err(status) => {
                    let e = from_status(&status);
                    match e.kind() {
                        ErrorKind::NotFound => return Ok(false),
                        ErrorKind::InvalidSession if attempt == 0 => self.renew().await?,
                        _ => return Err(e),
                    }
                }
            }
        }
        Err(Error::new(
            ErrorKind::InvalidSession,
            "pub/sub refused a freshly renewed session",
        ))
    }

    async fn schema(&mut self, schema_id: &str) -> Result<Arc<apache_avro::Schema>> {
        if let Some(s) = self.schemas.get(schema_id) {
            return Ok(s.clone());
        }
        let request = self
            .request(SchemaRequest {
                schema_id: schema_id.to_owned(),
            })
            .await?;
        let info = self
            .grpc()
            .await?
            .get_schema(request)
            .await
            .map_err(|s| from_status(&s))?
            .into_inner();
        let schema = apache_avro::Schema::parse_str(&info.schema_json).map_err(|e| {
            Error::protocol(format!("schema {schema_id} is not Avro")).with_source(e)
        })?;
        let schema = Arc::new(schema);
        self.schemas.insert(schema_id.to_owned(), schema.clone());
        Ok(schema)
    }

    /// A request with the session's `accesstoken`, `instanceurl` and `tenantid` metadata.
    async fn request<T>(&self, body: T) -> Result<tonic::Request<T>> {
        let token = self.client.session().await?;
        let mut request = tonic::Request::new(body);
        let md = request.metadata_mut();
        let value = |s: &str| {
            s.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .map_err(|_| Error::protocol("session value is not ASCII"))
        };
        md.insert("accesstoken", value(token.access_token.expose())?);
        md.insert("instanceurl", value(&token.instance_url)?);
        md.insert("tenantid", value(&token.org_id)?);
        Ok(request)
    }

    /// Logs in again once per refusal; a refusal right after a renewal is final.
    async fn renew(&mut self) -> Result<()> {
        let stale = self.client.session().await?;
        if self
            .renewed
            .as_ref()
            .is_some_and(|renewed| Arc::ptr_eq(renewed, &stale))
        {
            return Err(Error::new(
                ErrorKind::InvalidSession,
                "pub/sub refused a freshly renewed session",
            ));
        }
        let fresh = self.client.renew_session(&stale).await?;
        self.stats.session_renewals += 1;
        self.renewed = Some(fresh);
        Ok(())
    }

    async fn grpc(&mut self) -> Result<PubSubClient<Channel>> {
        if let Some(c) = &self.grpc {
            return Ok(c.clone());
        }
        let channel = connect(
            &self.config.endpoint,
            self.client.config().ca_cert.as_deref(),
        )
        .await?;
        let grpc = PubSubClient::new(channel).max_decoding_message_size(8 << 20);
        self.grpc = Some(grpc.clone());
        Ok(grpc)
    }
}

async fn connect(endpoint: &str, ca_cert: Option<&std::path::Path>) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            Error::config(format!("cannot read ca_cert {}", path.display())).with_source(e)
        })?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    let url = format!("https://{endpoint}");
    Endpoint::from_shared(url)
        .map_err(|e| {
            Error::config(format!("pubsub_endpoint {endpoint} is not host:port")).with_source(e)
        })?
        .tls_config(tls)
        .map_err(|e| Error::config("pub/sub TLS configuration").with_source(e))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Transient,
                format!("cannot connect to pub/sub at {endpoint}"),
            )
            .with_source(e)
        })
}

/// Classifies a gRPC status, with Salesforce's `error-code` trailer as the code.
fn from_status(status: &Status) -> Error {
    let code = status
        .metadata()
        .get("error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let kind = match status.code() {
        Code::Unauthenticated => ErrorKind::InvalidSession,
        Code::NotFound => ErrorKind::NotFound,
        Code::InvalidArgument if code.contains("replayid") => ErrorKind::ReplicationRange,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ErrorKind::InvalidRequest
        }
        Code::PermissionDenied => ErrorKind::Rejected,
        Code::ResourceExhausted => ErrorKind::QuotaExceeded,
        Code::Unimplemented => ErrorKind::Protocol,
        _ => ErrorKind::Transient,
    };
    let error = Error::new(kind, format!("pub/sub: {}", status.message()));
    if code.is_empty() {
        error
    } else {
        error.with_code(code)
    }
}
