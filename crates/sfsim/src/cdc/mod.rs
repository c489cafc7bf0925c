//! Change Data Capture: the events commits produce, their retention and replay ids, and the
//! change-event faults. The Pub/Sub service (`crate::pubsub`) reads from the [`ChangeLog`].
//!
//! Events are appended by the store's commit observer while the commit holds the store, so the
//! log is in commit order and an event exists only once its transaction has committed.

pub mod event;
pub mod schema;

use crate::faults::Faults;
use crate::schema::Schema;
use crate::store::{CommitObserver, CommittedChange, Txn};
use event::{draft_events, encode, ChangeEventHeader, DraftEvent};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use schema::EventSchemas;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Salesforce keeps change events for 72 hours.
pub const DEFAULT_RETENTION_SECS: u64 = 72 * 3600;

/// The API version named in `changeOrigin`.
const CHANGE_ORIGIN: &str = "com/salesforce/api/rest/62.0";

/// One retained event, encoded once and shared by every subscriber.
#[derive(Debug)]
pub struct StoredEvent {
    pub replay_id: u64,
    pub object: usize,
    pub event_id: String,
    pub schema_id: String,
    pub payload: Vec<u8>,
    pub header: ChangeEventHeader,
    /// The body's fields (indexes into the schema's fields) with their values; rendered as JSON
    /// only when listed, which keeps a busy org's retained events compact.
    pub body: Vec<(usize, crate::value::Value)>,
    pub stored_at: Instant,
}

/// Replay ids on the wire: 8 bytes, big-endian, as Salesforce's clients decode them.
pub fn encode_replay_id(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

pub fn decode_replay_id(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct CdcFaults {
    gap_rate: f64,
    drop_rate: f64,
    overflow_above: u64,
}

#[derive(Default)]
struct Retained {
    events: VecDeque<Arc<StoredEvent>>,
    /// The replay id of the newest event evicted by retention: replaying from before it would
    /// miss events, so it is refused.
    evicted_through: u64,
    latest: u64,
    commit_number: i64,
}

#[derive(Default)]
pub struct CdcCounts {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub gaps: AtomicU64,
    pub dropped: AtomicU64,
}

/// Where a subscription starts, as resolved from its first FetchRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Latest,
    Earliest,
    After(u64),
}

/// A replay id that is not (or no longer) in the log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("The Replay ID validation failed.")]
pub struct InvalidReplayId;

pub struct ChangeLog {
    pub schemas: EventSchemas,
    retention: Duration,
    retained: RwLock<Retained>,
    faults: Mutex<CdcFaults>,
    pub counts: CdcCounts,
    commit_user: String,
    /// The latest replay id, for subscribers waiting on new events.
    latest_tx: watch::Sender<u64>,
}

impl ChangeLog {
    pub fn new(
        schema: &Schema,
        no_cdc: &[String],
        commit_user: &str,
        retention: Duration,
    ) -> Arc<ChangeLog> {
        Arc::new(ChangeLog {
            schemas: EventSchemas::new(schema, no_cdc),
            retention,
            retained: RwLock::new(Retained::default()),
            faults: Mutex::new(CdcFaults::default()),
            counts: CdcCounts::default(),
            commit_user: commit_user.to_string(),
            latest_tx: watch::channel(0).0,
        })
    }

    /// Takes the change-event keys of the faults in force.
    pub fn apply_faults(&self, f: &Faults) {
        *self.faults.lock() = CdcFaults {
            gap_rate: f.cdc_gap_rate,
            drop_rate: f.cdc_drop_rate,
            overflow_above: f.cdc_overflow_above,
        };
    }

    pub fn subscribe_latest(&self) -> watch::Receiver<u64> {
        self.latest_tx.subscribe()
    }

    pub fn latest_replay_id(&self) -> u64 {
        self.retained.read().latest
    }

    /// The replay id a subscription starts after.
    pub fn resolve_start(&self, start: StartAt) -> Result<u64, InvalidReplayId> {
        self.expire();
        let r = self.retained.read();
        match start {
            StartAt::Latest => Ok(r.latest),
            StartAt::Earliest => Ok(r.evicted_through),
            StartAt::After(id) if id >= r.evicted_through && id <= r.latest => Ok(id),
            StartAt::After(_) => Err(InvalidReplayId),
        }
    }

    /// Up to `max` retained events after `cursor` that `matches` accepts, and the replay id
    /// the scan reached (past non-matching events too).
    pub fn read_after(
        &self,
        cursor: u64,
        max: usize,
        matches: impl Fn(&StoredEvent) -> bool,
    ) -> (Vec<Arc<StoredEvent>>, u64) {
        let r = self.retained.read();
        let start = r.events.partition_point(|e| e.replay_id <= cursor);
        let mut out = Vec::new();
        let mut reached = cursor.max(r.evicted_through);
        for e in r.events.range(start..) {
            if out.len() >= max {
                break;
            }
            reached = e.replay_id;
            if matches(e) {
                out.push(e.clone());
            }
        }
        if out.len() < max {
            reached = reached.max(r.latest);
        }
        (out, reached)
    }

    /// Every retained event, oldest first, as `GET /_sim/cdc` lists them.
    pub fn to_json(&self) -> serde_json::Value {
        self.expire();
        let r = self.retained.read();
        let events: Vec<_> = r
            .events
            .iter()
            .map(|e| {
                json!({
                    "replay_id": e.replay_id.to_string(),
                    "channel": self.schemas.by_object[e.object].topic,
                    "event_id": e.event_id,
                    "schema_id": e.schema_id,
                    "header": e.header,
                    "fields": event::body_json(&self.schemas.by_object[e.object], &e.body),
                })
            })
            .collect();
        json!({"events": events, "latest_replay_id": r.latest.to_string()})
    }

    pub fn counts_json(&self) -> serde_json::Value {
        json!({
            "published": self.counts.published.load(Relaxed),
            "delivered": self.counts.delivered.load(Relaxed),
            "gaps": self.counts.gaps.load(Relaxed),
            "dropped": self.counts.dropped.load(Relaxed),
        })
    }

    /// Drops events older than the retention.
    pub fn expire(&self) {
        let mut r = self.retained.write();
        while let Some(front) = r.events.front() {
            if front.stored_at.elapsed() < self.retention {
                break;
            }
            let id = front.replay_id;
            r.events.pop_front();
            r.evicted_through = id;
        }
    }

    fn append(&self, drafts: Vec<DraftEvent>) {
        let commit_ms = chrono::Utc::now().timestamp_millis();
        let transaction_key = uuid::Uuid::new_v4().to_string();
        let mut r = self.retained.write();
        r.commit_number += 1;
        let commit_number = r.commit_number;
        for (n, draft) in drafts.into_iter().enumerate() {
            let schema = &self.schemas.by_object[draft.object];
            let (changed_fields, nulled_fields) = event::header_bitmaps(&draft);
            let header = ChangeEventHeader {
                entity_name: schema.entity.clone(),
                record_ids: draft.record_ids,
                change_type: draft.change_type,
                change_origin: CHANGE_ORIGIN.into(),
                transaction_key: transaction_key.clone(),
                sequence_number: n as i32 + 1,
                commit_timestamp: commit_ms,
                // Salesforce's SCN: increasing across commits, shared within one.
                commit_number,
                commit_user: self.commit_user.clone(),
                nulled_fields,
                diff_fields: vec![],
                changed_fields,
            };
            let payload = match encode(schema, &header, &draft.body) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, entity = %schema.entity, "change event does not encode; dropped");
                    self.counts.dropped.fetch_add(1, Relaxed);
                    continue;
                }
            };
            r.latest += 1;
            let stored = StoredEvent {
                replay_id: r.latest,
                object: draft.object,
                event_id: uuid::Uuid::new_v4().to_string(),
                schema_id: schema.schema_id.clone(),
                payload,
                body: draft.body,
                header,
                stored_at: Instant::now(),
            };
            if stored.header.change_type.starts_with("GAP_") {
                self.counts.gaps.fetch_add(1, Relaxed);
            }
            self.counts.published.fetch_add(1, Relaxed);
            r.events.push_back(Arc::new(stored));
        }
        let latest = r.latest;
        drop(r);
        self.latest_tx.send_replace(latest);
    }
}

impl CommitObserver for ChangeLog {
    fn committed(&self, _schema: &Schema, _txn: &Txn, changes: Vec<CommittedChange>) {
        let faults = *self.faults.lock();
        let drafts = if faults.overflow_above > 0 && changes.len() as u64 > faults.overflow_above {
            overflow_events(&self.schemas, &changes)
        } else {
            let mut rng = rand::thread_rng();
            draft_events(&self.schemas, &changes)
                .into_iter()
                .filter_map(|d| {
                    if faults.drop_rate > 0.0 && rng.gen_bool(faults.drop_rate) {
                        self.counts.dropped.fetch_add(1, Relaxed);
                        None
                    } else if faults.gap_rate > 0.0 && rng.gen_bool(faults.gap_rate) {
                        Some(d.into_gap())
                    } else {
                        Some(d)
                    }
                })
                .collect()
        };
        if !drafts.is_empty() {
            self.append(drafts);
        }
    }
}

/// One `GAP_OVERFLOW` event per entity the transaction touched, without ids or data.
fn overflow_events(schemas: &EventSchemas, changes: &[CommittedChange]) -> Vec<DraftEvent> {
    let mut objects: Vec<usize> = Vec::new();
    for c in changes.iter().filter(|c| schemas.supported(c.object)) {
        if !objects.contains(&c.object) {
            objects.push(c.object);
        }
    }
    objects
        .into_iter()
        .map(|object| DraftEvent {
            object,
            change_type: "GAP_OVERFLOW".into(),
            record_ids: vec![],
            body: vec![],
            changed: vec![],
            nulled: vec![],
        })
        .collect()
}
