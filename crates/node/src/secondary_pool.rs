//! The SecondaryPollPool: one per connection. Re-reads every closed primary window
//! `secondary_delay_secs` after it closed, with at most `secondary_concurrency` polls in flight,
//! and repairs what the primary poll missed (drift).
//!
//! A secondary poll re-reads the window's exact bounds (a Bulk window: one job, one batch per
//! primary batch, same bounds — DESIGN.md invariant 5) and merges what it read; the merge rewrites
//! only rows that are missing, older, or differ, and those are the drift.
//!
//! Why full records and not Id + SystemModstamp first: SystemModstamp has whole-second precision,
//! so two versions of a record written in the same second (one committed before the primary read,
//! one by a long transaction committed after it) carry the same stamp. Comparing stamps cannot see
//! that drift; the end-to-end tests measured 1-3 such records per run left behind by a stamp-only
//! comparison. Comparing values is the only way, and the merge already does it.

//!
//! A window is not re-read before getUpdated's `latestDateCovered` has passed its end (DESIGN.md
//! invariant 1): a transaction still open over the window's end could commit rows into it after
//! the re-read, and then neither read would see them. A due window whose end is not yet covered
//! goes back into the queue, checked again as `latestDateCovered` moves (whole minutes), for at
//! most `secondary_max_hold_secs`; a hold that runs out is counted and the poll runs anyway.
//!
//! The pool is one task with a due-time queue: a heap of windows ordered by when their secondary
//! poll is due, and one timer for the earliest. A window becomes a task only when it is due and
//! a permit is free, and a failed poll goes back into the queue with its retry time, so a
//! backlog of any size (a restart hands back up to 100,000 windows) costs one heap entry per
//! window, not a sleeping task.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftless_core::state::{ReadKind, SecondaryCommit, WindowRecord};
use salesforce::Backoff;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::db_writer::Progress;
use crate::error::{Result, Retry};
use crate::mapping_ctx::{Finished, MappingCtx, RowBatch};
use crate::salesforce_client::{self as sf, ReadCost};
use crate::shutdown::{Running, StopSignal};

/// Windows a poller may hand over before it waits for the pool to take them.
const QUEUE_BOUND: usize = 64;

/// Retry delays of a failed secondary poll: 2 s, 4 s, 8 s... up to 256 s.
const RETRY_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(256),
    max_attempts: u32::MAX,
};

/// One connection's pool: the task that runs its queue.
pub struct SecondaryPollPool {
    queue: SecondaryQueue,
    task: Running,
    counts: Arc<Counts>,
}

/// What the pool holds right now.
#[derive(Default)]
struct Counts {
    /// Windows in the queue (not yet due, or due and waiting for a permit).
    queued: AtomicUsize,
    /// Tasks the pool has spawned that are still running: one per poll under way.
    polling: AtomicUsize,
}

/// Where pollers hand closed windows to their connection's pool. Cheap to clone.
#[derive(Clone)]
pub struct SecondaryQueue {
    tx: mpsc::Sender<Schedule>,
}

struct Schedule {
    ctx: Arc<MappingCtx>,
    window: WindowRecord,
}

impl SecondaryQueue {
    /// Queues `window` for its secondary poll at `window.secondary_due_at`; false when the pool
    /// is gone. Waits while the pool is behind taking windows.
    pub async fn schedule(&self, ctx: Arc<MappingCtx>, window: WindowRecord) -> bool {
        self.tx.send(Schedule { ctx, window }).await.is_ok()
    }
}

impl SecondaryPollPool {
    /// Starts the pool with `concurrency` permits on the current arbiter.
    pub fn start(concurrency: u32) -> SecondaryPollPool {
        let (tx, rx) = mpsc::channel(QUEUE_BOUND);
        let permits = Arc::new(Semaphore::new(concurrency.max(1) as usize));
        let counts = Arc::new(Counts::default());
        let shown = counts.clone();
        let task = Running::spawn(move |stop| {
            DueQueue {
                heap: BinaryHeap::new(),
                held: HashMap::new(),
                seq: 0,
                permits,
                counts: shown,
            }
            .run(rx, stop)
        });
        SecondaryPollPool {
            queue: SecondaryQueue { tx },
            task,
            counts,
        }
    }

    /// Windows waiting in the queue (not yet due, or due and waiting for a permit).
    pub fn queued(&self) -> usize {
        self.counts.queued.load(AtomicOrdering::Relaxed)
    }

    /// Tasks of this pool alive now: its queue's own, plus one per poll under way (never more
    /// than `secondary_concurrency`, however long the queue).
    pub fn tasks(&self) -> usize {
        usize::from(!self.task.is_finished()) + self.counts.polling.load(AtomicOrdering::Relaxed)
    }

    pub fn queue(&self) -> SecondaryQueue {
        self.queue.clone()
    }

    /// Stops the pool: windows not yet due are dropped (a restart finds them again, they are not
    /// marked done), polls under way see their mapping's switch.
    pub async fn stop(self) {
        self.task.stop().await;
    }
}

/// A window waiting in the queue (or being polled).
struct Due {
    at: DateTime<Utc>,
    /// Insertion order among windows due at the same time.
    seq: u64,
    ctx: Arc<MappingCtx>,
    window: WindowRecord,
    failures: u32,
    /// When the poll was first held back for `latestDateCovered`.
    held_since: Option<DateTime<Utc>>,
}

impl Due {
    fn key(&self) -> WindowKey {
        (
            format!("{}/{}", self.ctx.key.connection, self.ctx.key.object),
            self.window.id,
        )
    }
}

// The heap is a max-heap: the earliest due window compares greatest.
impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}

/// (connection/object, window id).
type WindowKey = (String, i64);

/// What a finished poll task tells the queue.
enum PollEnd {
    Done(WindowKey, Arc<MappingCtx>),
    Retry(Due),
}

struct DueQueue {
    heap: BinaryHeap<Due>,
    /// Windows queued or being polled, and the mapping run that holds each, so a window is never
    /// polled twice at once; a stopped run's hold gives way to the next run's schedule.
    held: HashMap<WindowKey, Arc<MappingCtx>>,
    seq: u64,
    permits: Arc<Semaphore>,
    counts: Arc<Counts>,
}

impl DueQueue {
    async fn run(mut self, mut scheduled: mpsc::Receiver<Schedule>, stop: StopSignal) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<PollEnd>();
        loop {
            self.counts
                .queued
                .store(self.heap.len(), AtomicOrdering::Relaxed);
            let now = Utc::now();
            let next = self.heap.peek().map(|d| d.at);
            let due_now = next.is_some_and(|at| at <= now);
            let wait = next
                .filter(|_| !due_now)
                .map(|at| (at - now).to_std().unwrap_or_default());
            tokio::select! {
                biased;
                _ = stop.stopped() => break,
                Some(f) = done_rx.recv() => match f {
                    PollEnd::Done(key, ctx) => self.release(&key, &ctx),
                    PollEnd::Retry(due) => self.push(due),
                },
                msg = scheduled.recv() => match msg {
                    Some(s) => self.schedule(s),
                    None => break,
                },
                permit = self.permits.clone().acquire_owned(), if due_now => {
                    let Ok(permit) = permit else { break };
                    let due = self.heap.pop().expect("peeked");
                    if due.ctx.stopped() {
                        self.release(&due.key(), &due.ctx);
                        continue;
                    }
                    let counts = self.counts.clone();
                    counts.polling.fetch_add(1, AtomicOrdering::Relaxed);
                    let done = done_tx.clone();
                    actix_rt::spawn(async move {
                        poll_window(due, permit, done).await;
                        counts.polling.fetch_sub(1, AtomicOrdering::Relaxed);
                    });
                }
                _ = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => {}
            }
        }
    }

    fn schedule(&mut self, s: Schedule) {
        let key = (
            format!("{}/{}", s.ctx.key.connection, s.ctx.key.object),
            s.window.id,
        );
        if let Some(holder) = self.held.get(&key) {
            if !holder.stopped() {
                return;
            }
        }
        self.held.insert(key, s.ctx.clone());
        self.push(Due {
            at: s.window.secondary_due_at,
            seq: 0,
            ctx: s.ctx,
            window: s.window,
            failures: 0,
            held_since: None,
        });
    }

    fn push(&mut self, mut due: Due) {
        self.seq += 1;
        due.seq = self.seq;
        self.heap.push(due);
    }

    /// Forgets the hold on `key` if `ctx`'s run still has it.
    fn release(&mut self, key: &WindowKey, ctx: &Arc<MappingCtx>) {
        if self.held.get(key).is_some_and(|h| Arc::ptr_eq(h, ctx)) {
            self.held.remove(key);
        }
    }
}

/// Runs one due window's poll holding `permit`; a failure goes back to the queue with its retry
/// time, and the permit is free meanwhile.
async fn poll_window(
    mut due: Due,
    permit: OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<PollEnd>,
) {
    let ctx = due.ctx.clone();
    let result = match coverage(&ctx, &mut due).await {
        Ok(Coverage::Held(until)) => {
            drop(permit);
            due.at = until;
            let _ = done.send(PollEnd::Retry(due));
            return;
        }
        Ok(Coverage::Covered) => {
            let _permit = permit;
            let _counted = InFlightGuard::new(&ctx);
            secondary_poll(&ctx, &due.window).await
        }
        Err(e) => Err(e),
    };
    let retry_in = match result {
        Ok(()) => None,
        Err(e) => {
            due.failures += 1;
            let delay = match e.retry() {
                Retry::Stop => None,
                Retry::WaitForQuota(d) => Some(d),
                _ => Some(RETRY_BACKOFF.ceiling(due.failures)),
            };
            if delay.is_some() {
                tracing::warn!(object = ctx.object(), window = due.window.id, error = %e, "secondary poll failed; retrying");
                ctx.registry
                    .update(&ctx.key.connection, &ctx.key.object, |s| {
                        s.counters.errors += 1
                    });
            }
            delay
        }
    };
    let msg = match retry_in {
        Some(d) if !ctx.stopped() => {
            // A wait too long for chrono is a day: the quota resets daily anyway.
            due.at = Utc::now()
                + chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::days(1));
            PollEnd::Retry(due)
        }
        _ => PollEnd::Done(due.key(), ctx),
    };
    // The queue is gone only when the pool stopped, and then nothing waits for this.
    let _ = done.send(msg);
}

enum Coverage {
    /// `latestDateCovered` has passed the window's end (or the hold ran out): read it now.
    Covered,
    /// Not yet: look again at this time.
    Held(DateTime<Utc>),
}

/// Whether `due`'s window may be re-read now: a getUpdated call only when no earlier answer
/// already covers the window's end.
async fn coverage(ctx: &MappingCtx, due: &mut Due) -> Result<Coverage> {
    let max_hold = ctx.settings.secondary_max_hold;
    let end = due.window.window.end;
    if max_hold.is_zero() || ctx.covered_through().is_some_and(|c| c >= end) {
        return Ok(Coverage::Covered);
    }
    let now = Utc::now();
    if crate::initial_load::latest_date_covered(ctx, now).await? >= end {
        return Ok(Coverage::Covered);
    }
    let since = *due.held_since.get_or_insert(now);
    let telemetry = ctx.registry.telemetry();
    if now - since >= max_hold {
        tracing::warn!(
            object = ctx.object(), window = due.window.id, end = %end,
            held_secs = (now - since).num_seconds(),
            "latestDateCovered has not reached the window's end within secondary_max_hold_secs; \
             re-reading it anyway (a transaction still open may commit into it unseen)"
        );
        telemetry.secondary_held(&ctx.key.connection, &ctx.key.object, true);
        return Ok(Coverage::Covered);
    }
    telemetry.secondary_held(&ctx.key.connection, &ctx.key.object, false);
    Ok(Coverage::Held(now + recheck_after(now, end)))
}

/// `latestDateCovered` moves in whole minutes: look again just after the minute that would cover
/// `end`, and at least every 30 s while a long transaction holds it further back.
fn recheck_after(now: DateTime<Utc>, end: DateTime<Utc>) -> chrono::Duration {
    let secs = end.timestamp();
    let covering_minute = secs - secs.rem_euclid(60) + if secs % 60 == 0 { 0 } else { 60 };
    let wait = covering_minute - now.timestamp() + 1;
    chrono::Duration::seconds(wait.clamp(2, 30))
}

/// Counts a poll holding a permit in the process's telemetry for as long as it lives, so the
/// in-flight figure stays right however the poll ends (error, stop, panic unwinding).
struct InFlightGuard<'a>(&'a MappingCtx);

impl<'a> InFlightGuard<'a> {
    fn new(ctx: &'a MappingCtx) -> InFlightGuard<'a> {
        ctx.registry
            .telemetry()
            .secondary_started(&ctx.key.connection);
        InFlightGuard(ctx)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0
            .registry
            .telemetry()
            .secondary_finished(&self.0.key.connection);
    }
}

async fn secondary_poll(ctx: &MappingCtx, w: &WindowRecord) -> Result<()> {
    let started = std::time::Instant::now();
    let object = ctx.object().to_owned();
    let mut cost = ReadCost::default();
    let mut batch = RowBatch::new(ctx);
    // A Bulk window is re-read with its primary's batches; a REST one with one query.
    let batches: &[_] = match w.kind {
        ReadKind::Bulk => &w.batches,
        _ => &[],
    };
    sf::read_window(
        &ctx.client,
        &ctx.mapping,
        &w.window,
        batches,
        &mut cost,
        &mut batch,
    )
    .await?;
    let records = batch.records;
    let commit = SecondaryCommit {
        window_id: w.id,
        records,
        drift_records: 0,
        bulk_jobs: cost.bulk_jobs,
        bulk_batches: cost.bulk_batches,
        rest_queries: cost.rest_queries,
        api_calls: ctx.take_api_calls(),
    };
    let Finished { applied, .. } = batch.finish(Progress::Secondary(commit.clone())).await?;
    let drift = applied.deleted + applied.changed;
    if drift > 0 {
        tracing::info!(object, window = w.id, start = %w.window.start, end = %w.window.end, drift, "secondary poll repaired drift");
    }
    ctx.registry
        .update(&ctx.key.connection, &ctx.key.object, |s| {
            let c = &mut s.counters;
            c.secondary_polls += 1;
            c.secondary_records += records;
            c.drift_records += drift;
            c.secondary_bulk_jobs += cost.bulk_jobs;
            c.secondary_bulk_batches += cost.bulk_batches;
            c.secondary_rest_queries += cost.rest_queries;
            c.api_calls += commit.api_calls;
        });
    ctx.registry.telemetry().observe_poll(
        &ctx.key.connection,
        &ctx.key.object,
        crate::metrics::PollKind::Secondary,
        started.elapsed(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db_writer::DbWriter;
    use crate::mapping_ctx::{Claimed, MappingSettings};
    use crate::shutdown::Shutdown;
    use crate::status::Registry;
    use actix::Actor;
    use driftless_core::config::Config;
    use driftless_core::describe::{FieldDescribe, ObjectDescribe};
    use driftless_core::mapping::{resolve, MappingFile};
    use driftless_core::state::MappingKey;
    use driftless_core::window::Window;

    /// A mapping context whose org and database are never contacted: every window fed below is
    /// due in a day, so nothing is read.
    fn idle_ctx(stop: &Shutdown) -> Arc<MappingCtx> {
        let toml = r#"
[[connection]]
name = "acme"
database_url = "postgres://postgres@127.0.0.1:1/none"
mappings = "mappings.json"

[connection.salesforce]
login_url = "http://127.0.0.1:1"
auth = "password"
username = "u"
password = "p"
client_id = "c"
client_secret = "s"
"#;
        let config = Config::parse(
            toml,
            std::path::Path::new("/tmp/driftless.toml"),
            Default::default(),
        )
        .expect("config parses");
        let conn = &config.connections[0];
        let file = MappingFile::parse(
            r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only",
            "fields":{"Id":{},"Name":{}}}}]}"#,
        )
        .expect("mappings parse");
        let fd = |name: &str, t: &str| FieldDescribe {
            name: name.into(),
            sf_type: t.into(),
            length: 255,
            ..Default::default()
        };
        let describe = ObjectDescribe {
            name: "Account".into(),
            fields: vec![
                fd("Id", "id"),
                fd("SystemModstamp", "datetime"),
                fd("Name", "string"),
            ],
        };
        let mapping = Arc::new(resolve(&file.mappings[0], &describe).expect("resolves"));
        let db = DbWriter::new(conn, "test", 1).expect("pool builds").start();
        Arc::new(MappingCtx::new(
            Claimed {
                key: MappingKey::new(&conn.schema, &conn.name, "Account"),
                epoch: 1,
                mapping,
            },
            MappingSettings::resolve(&conn.sync, &file.mappings[0].config, &Default::default()),
            sf::client(conn).expect("client builds"),
            db,
            Registry::default(),
            stop.signal(),
        ))
    }

    fn window(id: i64, due: DateTime<Utc>) -> WindowRecord {
        let start = due - chrono::Duration::days(2);
        WindowRecord {
            id,
            window: Window {
                start,
                end: start + chrono::Duration::seconds(60),
            },
            kind: ReadKind::Rest,
            batches: Vec::new(),
            primary_records: 10,
            primary_done_at: start,
            secondary_due_at: due,
            secondary_done_at: None,
            secondary_records: 0,
            drift_records: 0,
        }
    }

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// A restart hands the pool every pending window at once. Printed, not timed: the figures
    /// are in the issue notes. What is asserted is the task count, which must not move.
    #[actix_rt::test]
    async fn a_backlog_of_100k_windows_keeps_tasks_flat() {
        const N: i64 = 100_000;
        let stop = Shutdown::new();
        let ctx = idle_ctx(&stop);
        let pool = SecondaryPollPool::start(4);
        let queue = pool.queue();
        tokio::task::yield_now().await;
        let tasks_before = pool.tasks();
        let rss_before = rss_kib();
        let due = Utc::now() + chrono::Duration::days(1);
        println!("secondary pool backlog: windows fed, pool tasks alive, process RSS KiB");
        println!("  {:>7} {:>5} {:>8}", 0, tasks_before, rss_before);
        let mut max_tasks = tasks_before;
        for id in 1..=N {
            assert!(queue.schedule(ctx.clone(), window(id, due)).await);
            if id % 25_000 == 0 {
                while pool.queued() < id as usize {
                    tokio::task::yield_now().await;
                }
                max_tasks = max_tasks.max(pool.tasks());
                println!("  {:>7} {:>5} {:>8}", id, pool.tasks(), rss_kib());
            }
        }
        let rss_queue = rss_kib().saturating_sub(rss_before);
        println!(
            "  queue: {} windows, {} B of RSS per window",
            pool.queued(),
            rss_queue * 1024 / N as u64
        );
        assert_eq!(pool.queued(), N as usize);
        assert_eq!(tasks_before, 1, "the queue's own task");
        assert_eq!(max_tasks, 1, "a queued window must not be a task");

        // The same backlog as one sleeping task per window (the pool's former shape), measured
        // in the same run for comparison.
        let before = rss_kib();
        let handles: Vec<_> = (1..=N)
            .map(|id| {
                let (ctx, w) = (ctx.clone(), window(id, due));
                actix_rt::spawn(async move {
                    let wait = (w.secondary_due_at - Utc::now())
                        .to_std()
                        .unwrap_or_default();
                    ctx.sleep(wait).await;
                    drop(w);
                })
            })
            .collect();
        tokio::task::yield_now().await;
        println!(
            "  one task per window (the former shape): {} tasks, {} B of RSS per window",
            handles.iter().filter(|h| !h.is_finished()).count(),
            rss_kib().saturating_sub(before) * 1024 / N as u64
        );
        stop.trigger();
        for h in handles {
            let _ = h.await;
        }
        pool.stop().await;
    }
}
