//! The connection's change-event stream: where it resumes, what each batch of events makes the
//! mappings do, and what happens when the stream cannot go on.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use actix::Addr;
use chrono::Utc;
use driftless_core::config::ConnectionConfig;
use driftless_core::ident::Ident;
use salesforce::{
    change_event_topic, Backoff, Batch, ChangeType, Client, ErrorKind, PubSubConfig, ReplayFrom,
    Subscriber, ALL_CHANGE_EVENTS,
};

use super::fetch::{fetch_and_merge, is_record_id};
use super::hub::{Target, Targets};
use crate::db_writer::{DbWriter, NotifyResumePoint, Progress};
use crate::mapping_ctx::RowBatch;
use crate::shutdown::StopSignal;

/// After a response with several events (a burst), how long to let more arrive before reading:
/// many events, one fetch. A lone event is read at once.
const BURST_LINGER: Duration = Duration::from_millis(100);

/// The most events gathered into one batch (5 queries of 200 Ids at most per mapping).
const MAX_GATHERED: usize = 1000;

/// How often a mapping no event touched still commits the stream position, so its stored
/// replay id never falls behind retention on a quiet object.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// Waits between attempts when the subscription itself fails (not a stream reset, which the
/// subscriber retries on its own).
const RESUBSCRIBE_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(300),
    max_attempts: u32::MAX,
};

pub(crate) struct Subscription {
    connection: String,
    schema: Ident,
    config: PubSubConfig,
    client: Client,
    db: Addr<DbWriter>,
    targets: Targets,
    notify_objects: Vec<String>,
    /// Objects whose change-event topic Salesforce says does not exist: they stay on their
    /// interval polls, and status says why.
    missing_topics: HashMap<String, String>,
    topics_checked: bool,
    last_checkpoint: HashMap<String, Instant>,
}

/// What one batch of events asks of one mapping.
#[derive(Default)]
struct Wanted {
    ids: BTreeSet<String>,
    /// A gap without usable ids, an overflow, or a change type not understood: a window poll.
    window_poll: bool,
    commits: Vec<chrono::DateTime<Utc>>,
    events: i64,
    gaps: i64,
    overflows: i64,
}

impl Subscription {
    pub fn new(
        conn: &ConnectionConfig,
        client: Client,
        db: Addr<DbWriter>,
        targets: Targets,
        notify_objects: Vec<String>,
    ) -> Subscription {
        Subscription {
            connection: conn.name.clone(),
            schema: conn.schema.clone(),
            config: PubSubConfig::new(conn.salesforce.pubsub_endpoint.clone()),
            client,
            db,
            targets,
            notify_objects,
            missing_topics: HashMap::new(),
            topics_checked: false,
            last_checkpoint: HashMap::new(),
        }
    }

    pub async fn run(mut self, stop: StopSignal) {
        let mut failures = 0u32;
        let mut force_latest = false;
        while !stop.is_stopping() {
            let from = if force_latest {
                Ok(ReplayFrom::Latest)
            } else {
                self.resume_point().await
            };
            let outcome = match from {
                Ok(from) => {
                    tracing::info!(connection = %self.connection, resume = matches!(from, ReplayFrom::After(_)), "subscribing to change events");
                    let mut sub = Subscriber::new(
                        self.client.clone(),
                        self.config.clone(),
                        ALL_CHANGE_EVENTS,
                        from,
                    );
                    self.check_topics(&mut sub).await;
                    self.stream(&mut sub, &stop).await
                }
                Err(e) => Err(e),
            };
            let Err(e) = outcome else {
                return;
            };
            failures = failures.saturating_add(1);
            let delay = match &e {
                crate::NodeError::Salesforce(se) if se.kind() == ErrorKind::ReplicationRange => {
                    // Events since the stored position are gone: a window poll from the last
                    // committed window reads what they would have named.
                    tracing::warn!(connection = %self.connection, "stored replay id is older than retention; window polls from the last committed windows, events from now on");
                    self.wake_all();
                    force_latest = true;
                    Duration::ZERO
                }
                crate::NodeError::Salesforce(se) if se.kind() == ErrorKind::NotFound => {
                    self.mark_unavailable(&format!(
                        "change events unavailable ({e}); polling on the interval only"
                    ));
                    RESUBSCRIBE_BACKOFF.cap
                }
                _ => {
                    tracing::warn!(connection = %self.connection, error = %e, "change-event subscription failed; polling goes on");
                    RESUBSCRIBE_BACKOFF.delay(failures)
                }
            };
            if stop.sleep(delay).await {
                return;
            }
        }
    }

    /// Asks for each notify object's own topic once: `/data/ChangeEvents` is silent about an
    /// object without Change Data Capture, so without this its mapping would look subscribed
    /// and simply never hear anything.
    async fn check_topics(&mut self, sub: &mut Subscriber) {
        if self.topics_checked {
            return;
        }
        for object in self.notify_objects.clone() {
            let topic = change_event_topic(&object);
            match sub.topic_exists(&topic).await {
                Ok(true) => {}
                Ok(false) => {
                    let why = format!(
                        "no change events for {object}: topic {topic} does not exist (Change Data Capture is not enabled for it); polling on the interval only"
                    );
                    tracing::warn!(connection = %self.connection, "{why}");
                    self.missing_topics.insert(object.clone(), why);
                }
                Err(e) => {
                    // Asked again at the next subscription; events still flow meanwhile.
                    tracing::warn!(connection = %self.connection, object = %object, error = %e, "could not check the change-event topic");
                    return;
                }
            }
        }
        self.topics_checked = true;
        self.show_missing_topics();
    }

    /// Says again, for each object without a topic, why its events never come: its status row
    /// may have been written afresh since (a poller starting after the initial load).
    fn show_missing_topics(&self) {
        for (object, why) in &self.missing_topics {
            let Some(target) = self.targets.read().get(object).cloned() else {
                continue;
            };
            let ctx = &target.ctx;
            let shown = ctx
                .registry
                .get(&ctx.key.connection, &ctx.key.object)
                .is_some_and(|s| s.notify.unavailable.as_deref() == Some(why.as_str()));
            if !shown {
                self.mark_one_unavailable(object, why);
            }
        }
    }

    async fn resume_point(&self) -> crate::Result<ReplayFrom> {
        let point = self
            .db
            .send(NotifyResumePoint {
                schema: self.schema.clone(),
                connection: self.connection.clone(),
                objects: self.notify_objects.clone(),
            })
            .await??;
        Ok(point.map_or(ReplayFrom::Latest, ReplayFrom::After))
    }

    /// Runs the stream until stopped (Ok) or until it fails in a way the subscriber does not
    /// retry itself.
    async fn stream(&mut self, sub: &mut Subscriber, stop: &StopSignal) -> crate::Result<()> {
        loop {
            let mut batch = tokio::select! {
                b = sub.next() => b?,
                _ = stop.stopped() => return Ok(()),
            };
            if batch.events.len() > 1 && stop.sleep(BURST_LINGER).await {
                return Ok(());
            }
            while batch.events.len() < MAX_GATHERED {
                match sub.next_ready().await {
                    Some(Ok(more)) => {
                        batch.events.extend(more.events);
                        if !more.latest_replay_id.is_empty() {
                            batch.latest_replay_id = more.latest_replay_id;
                        }
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
            }
            self.clear_unavailable();
            self.show_missing_topics();
            self.act_on(batch).await;
        }
    }

    /// Acts on one batch for every mapping it concerns; the batch's events coalesce into one
    /// fetch per mapping.
    async fn act_on(&mut self, batch: Batch) {
        let replay_id = if batch.latest_replay_id.is_empty() {
            match batch.events.last() {
                Some(e) => e.replay_id.clone(),
                None => return,
            }
        } else {
            batch.latest_replay_id.clone()
        };
        let targets: HashMap<String, Target> = self.targets.read().clone();
        let mut wanted: HashMap<String, Wanted> = HashMap::new();
        for ev in batch.events {
            if !targets.contains_key(&ev.entity) {
                continue;
            }
            let w = wanted.entry(ev.entity.clone()).or_default();
            w.events += 1;
            match ev.change_type {
                ChangeType::Overflow => {
                    w.overflows += 1;
                    w.window_poll = true;
                }
                ChangeType::Other => w.window_poll = true,
                kind => {
                    if kind == ChangeType::Gap {
                        w.gaps += 1;
                        w.window_poll = true;
                    }
                    for id in ev.record_ids {
                        if is_record_id(&id) {
                            w.ids.insert(id);
                        } else {
                            w.window_poll = true;
                        }
                    }
                }
            }
            if let Some(t) = ev.commit_timestamp {
                w.commits.push(t);
            }
        }
        for (object, target) in &targets {
            let ctx = &target.ctx;
            if ctx.stopped() {
                continue;
            }
            let Some(w) = wanted.remove(object) else {
                self.checkpoint(target, &replay_id).await;
                continue;
            };
            let mut triggered = 0;
            let mut latencies: Vec<u32> = Vec::new();
            if w.window_poll {
                let latest = w.commits.iter().max().copied().unwrap_or_else(Utc::now);
                target.wake.request(latest);
                triggered += 1;
            }
            // Whether the position may be committed for this mapping: not past a failed fetch,
            // so a restart replays those events.
            let mut fetched = false;
            let mut failed = false;
            if !w.ids.is_empty() {
                match fetch_and_merge(ctx, &w.ids, &replay_id).await {
                    Ok(f) => {
                        tracing::debug!(object = %object, ids = w.ids.len(), records = f.records, queries = f.rest_queries, "changed records merged");
                        fetched = true;
                        triggered += 1;
                        let now = Utc::now();
                        let telemetry = ctx.registry.telemetry();
                        for c in &w.commits {
                            let ms = (now - *c).num_milliseconds().max(0);
                            telemetry.observe_notify_latency(
                                &ctx.key.connection,
                                object,
                                ms as f64 / 1000.0,
                            );
                            latencies.push(u32::try_from(ms).unwrap_or(u32::MAX));
                        }
                    }
                    Err(e) => {
                        // The window polls read these records too; only the speed-up is lost.
                        tracing::warn!(object = %object, error = %e, "fetching changed records failed; left to the window poll");
                        target.wake.request(Utc::now());
                        triggered += 1;
                        failed = true;
                    }
                }
            }
            if fetched {
                self.last_checkpoint.insert(object.clone(), Instant::now());
            } else if !failed {
                self.checkpoint(target, &replay_id).await;
            }
            let api_calls = ctx.take_api_calls();
            ctx.registry
                .update(&ctx.key.connection, &ctx.key.object, |s| {
                    s.notify.events += w.events;
                    s.notify.gaps += w.gaps;
                    s.notify.overflows += w.overflows;
                    s.notify.polls_triggered += triggered;
                    for ms in latencies {
                        s.notify.latency.push(ms);
                    }
                    s.counters.api_calls += api_calls;
                });
        }
    }

    /// Commits the stream position for a mapping the batch asked nothing of, at most every
    /// [`CHECKPOINT_EVERY`].
    async fn checkpoint(&mut self, target: &Target, replay_id: &[u8]) {
        let object = target.ctx.object().to_owned();
        if self
            .last_checkpoint
            .get(&object)
            .is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY)
        {
            return;
        }
        let batch = RowBatch::new(&target.ctx);
        match batch
            .finish(Progress::Notify {
                replay_id: replay_id.to_vec(),
            })
            .await
        {
            Ok(_) => {
                self.last_checkpoint.insert(object, Instant::now());
            }
            Err(e) => {
                tracing::warn!(object = %object, error = %e, "committing the change-event position failed")
            }
        }
    }

    fn wake_all(&self) {
        for target in self.targets.read().values() {
            target.wake.request(Utc::now());
            target
                .ctx
                .registry
                .update(&target.ctx.key.connection, &target.ctx.key.object, |s| {
                    s.notify.polls_triggered += 1
                });
        }
    }

    fn mark_unavailable(&self, why: &str) {
        tracing::warn!(connection = %self.connection, "{why}");
        let objects: Vec<String> = self.targets.read().keys().cloned().collect();
        for object in objects {
            self.mark_one_unavailable(&object, why);
        }
    }

    fn mark_one_unavailable(&self, object: &str, why: &str) {
        let Some(target) = self.targets.read().get(object).cloned() else {
            return;
        };
        let ctx = &target.ctx;
        ctx.registry
            .update(&ctx.key.connection, &ctx.key.object, |s| {
                s.notify.enabled = false;
                s.notify.unavailable = Some(why.to_owned());
                s.last_error = Some(why.to_owned());
                s.last_error_at = Some(Utc::now());
            });
    }

    fn clear_unavailable(&self) {
        for (object, target) in self.targets.read().iter() {
            if self.missing_topics.contains_key(object) {
                continue;
            }
            let ctx = &target.ctx;
            let Some(status) = ctx.registry.get(&ctx.key.connection, &ctx.key.object) else {
                continue;
            };
            if status.notify.unavailable.is_some() {
                ctx.registry
                    .update(&ctx.key.connection, &ctx.key.object, |s| {
                        s.notify.enabled = true;
                        s.notify.unavailable = None;
                    });
            }
        }
    }
}
