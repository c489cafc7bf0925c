//! One Subscribe stream: the first FetchRequest picks topic and start, later ones add credit;
//! events go out as the credit allows, keepalives when idle, and the stream-reset fault ends it.

use super::auth::{self, INVALID_REQUEST, REPLAY_ID_CORRUPTED};
use super::proto::{self, ConsumerEvent, FetchResponse, ProducerEvent, ReplayPreset};
use crate::cdc::{decode_replay_id, encode_replay_id, StartAt, StoredEvent};
use crate::http::AppState;
use actix_web::web;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

/// Salesforce sends at most this many events in one FetchResponse.
const MAX_BATCH: usize = 100;

pub async fn start(
    state: web::Data<AppState>,
    mut inbound: Streaming<proto::FetchRequest>,
    rpc_id: String,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<ReceiverStream<Result<FetchResponse, Status>>, Status> {
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| Status::cancelled("the stream ended before its first FetchRequest"))?;
    let topic = first.topic_name.clone();
    let object = super::service::resolve_topic(&state, &topic, &rpc_id)?;
    let start = match ReplayPreset::try_from(first.replay_preset) {
        Ok(ReplayPreset::Latest) => StartAt::Latest,
        Ok(ReplayPreset::Earliest) => StartAt::Earliest,
        Ok(ReplayPreset::Custom) => StartAt::After(
            decode_replay_id(&first.replay_id).ok_or_else(|| replay_refused(&rpc_id))?,
        ),
        Err(_) => {
            return Err(auth::error(
                Code::InvalidArgument,
                INVALID_REQUEST,
                &format!("Unknown replay_preset {}.", first.replay_preset),
                &rpc_id,
            ))
        }
    };
    let cursor = state
        .cdc
        .resolve_start(start)
        .map_err(|_| replay_refused(&rpc_id))?;
    let (tx, rx) = mpsc::channel(4);
    let stream = Stream {
        state,
        topic,
        object,
        rpc_id,
        cursor,
        credit: i64::from(first.num_requested.max(0)),
        tx,
    };
    tokio::spawn(stream.run(inbound, stopping));
    Ok(ReceiverStream::new(rx))
}

fn replay_refused(rpc_id: &str) -> Status {
    auth::error(
        Code::InvalidArgument,
        REPLAY_ID_CORRUPTED,
        "The Replay ID validation failed.",
        rpc_id,
    )
}

struct Stream {
    state: web::Data<AppState>,
    topic: String,
    object: Option<usize>,
    rpc_id: String,
    /// The replay id delivery has reached.
    cursor: u64,
    credit: i64,
    tx: mpsc::Sender<Result<FetchResponse, Status>>,
}

impl Stream {
    async fn run(
        mut self,
        mut inbound: Streaming<proto::FetchRequest>,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) {
        let cdc = self.state.cdc.clone();
        let mut latest = cdc.subscribe_latest();
        let opened = Instant::now();
        let mut last_sent = Instant::now();
        loop {
            match self.deliver().await {
                Err(()) => return,
                Ok(0) => {}
                Ok(_) => last_sent = Instant::now(),
            }
            let keepalive_at = last_sent + self.state.config.pubsub_keepalive;
            let reset_secs = self.state.faults.read().pubsub_stream_reset_secs;
            let reset_at = (reset_secs > 0).then(|| opened + Duration::from_secs(reset_secs));
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => {
                        if !req.topic_name.is_empty() && req.topic_name != self.topic {
                            let _ = self.tx.send(Err(auth::error(
                                Code::InvalidArgument,
                                INVALID_REQUEST,
                                &format!("The topic of a subscription cannot change: {} was subscribed, {} was requested.", self.topic, req.topic_name),
                                &self.rpc_id,
                            ))).await;
                            return;
                        }
                        self.credit += i64::from(req.num_requested.max(0));
                    }
                    Ok(None) | Err(_) => return,
                },
                changed = latest.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(keepalive_at) => {
                    if self.send(vec![]).await.is_err() {
                        return;
                    }
                    last_sent = Instant::now();
                }
                _ = sleep_until_opt(reset_at) => {
                    let _ = self.tx.send(Err(Status::unavailable("RST_STREAM closed stream"))).await;
                    return;
                }
                _ = self.tx.closed() => return,
                _ = stopping.changed() => {
                    let _ = self.tx.send(Err(Status::unavailable("The Pub/Sub API service is unavailable."))).await;
                    return;
                }
            }
        }
    }

    /// Sends what the credit allows and says how many events went; Err when the subscriber is
    /// gone.
    async fn deliver(&mut self) -> Result<usize, ()> {
        let mut sent = 0;
        loop {
            let max = (self.credit.max(0) as usize).min(MAX_BATCH);
            if max == 0 {
                return Ok(sent);
            }
            let object = self.object;
            let (events, reached) = self
                .state
                .cdc
                .read_after(self.cursor, max, |e| object.is_none_or(|o| e.object == o));
            self.cursor = reached;
            if events.is_empty() {
                return Ok(sent);
            }
            sent += events.len();
            self.credit -= events.len() as i64;
            self.state
                .cdc
                .counts
                .delivered
                .fetch_add(events.len() as u64, Relaxed);
            self.send(events.iter().map(|e| consumer_event(e)).collect())
                .await?;
        }
    }

    async fn send(&self, events: Vec<ConsumerEvent>) -> Result<(), ()> {
        let resp = FetchResponse {
            events,
            latest_replay_id: encode_replay_id(self.cursor),
            rpc_id: self.rpc_id.clone(),
            pending_num_requested: self.credit.clamp(0, i32::MAX as i64) as i32,
        };
        self.tx.send(Ok(resp)).await.map_err(|_| ())
    }
}

fn consumer_event(e: &StoredEvent) -> ConsumerEvent {
    ConsumerEvent {
        event: Some(ProducerEvent {
            id: e.event_id.clone(),
            schema_id: e.schema_id.clone(),
            payload: e.payload.clone(),
            headers: vec![],
        }),
        replay_id: encode_replay_id(e.replay_id),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
