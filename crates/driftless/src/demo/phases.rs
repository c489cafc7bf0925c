//! The demo's steps with the simulator and engine running: initial load, workload, one more
//! secondary cycle, verify, report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{NodeHandle, RunOptions, StatusDoc};

use super::app::App;
use super::postgres::{connect_client, Database};
use super::progress::Out;
use super::report::{self, Figures, MappingFigures};
use super::scenario::{self, CONNECTION, WRITE_BACK_OBJECT};
use super::sim::Sim;
use super::{interruptible, Deadline, DemoError, DemoOptions};
use driftless_node::session_sampler::SessionSampler;

/// Rows per transaction: small enough that the load bars move as batches commit.
const BATCH_ROWS: usize = 5000;
const LOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// Catching up after the workload: the last windows, then their secondary polls.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);
const TICK: Duration = Duration::from_millis(250);
/// How long each of the engine and the simulator gets to stop before the demo moves on.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The simulator's workload is stopped by then, so it has nothing left to finish.
const SIM_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the simulator and the engine, runs the steps, and stops both whatever the outcome.
pub async fn run(opts: &DemoOptions, db: &Database, out: &Out) -> Result<(), DemoError> {
    out.say("simulator: generating the org...");
    let sim = interruptible(Sim::start(opts.dataset.clone())).await?;
    out.say(&format!("simulator: {}", sim.info.instance_url));
    let dir =
        std::env::temp_dir().join(format!("driftless-demo-{}", uuid::Uuid::new_v4().simple()));
    let token = uuid::Uuid::new_v4().simple().to_string();
    let result = with_sim(opts, db, out, &sim, &dir, &token).await;
    // Stopping the workload first lets open transactions commit before the listener goes.
    let _ = tokio::time::timeout(STOP_TIMEOUT, sim.stop_workload()).await;
    if tokio::time::timeout(SIM_STOP_TIMEOUT, sim.stop())
        .await
        .is_err()
    {
        tracing::warn!("the simulator did not stop in time; it ends with the process");
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn with_sim(
    opts: &DemoOptions,
    db: &Database,
    out: &Out,
    sim: &Sim,
    dir: &std::path::Path,
    token: &str,
) -> Result<(), DemoError> {
    let (config, _) = scenario::write_config(
        dir,
        &opts.dataset,
        &db.url,
        &sim.info,
        token,
        opts.write_back,
    )?;
    let pool_size = config.connections[0].db_pool_size;
    let pg = connect_client(&db.url).await?;
    let sampler = SessionSampler::start(
        connect_client(&db.url).await?,
        &db.name,
        &driftless_node::db_writer::application_name(CONNECTION, "sync"),
    );
    let options = RunOptions {
        honor_latest_date_covered: false,
        batch_rows: BATCH_ROWS,
        ..RunOptions::default()
    };
    let engine = interruptible(async {
        driftless_node::run(config.clone(), options)
            .await
            .map_err(DemoError::from)
    })
    .await?;
    if let Some(addr) = engine.admin_addr() {
        out.say(&format!(
            "dashboard: http://{addr}/status?token={token}   metrics: http://{addr}/metrics"
        ));
    }
    let steps = Steps {
        opts,
        out,
        sim,
        engine: &engine,
        pg: &pg,
        db_url: &db.url,
    };
    let result = interruptible(async {
        let loaded = steps.initial_load().await?;
        steps.workload(&loaded).await?;
        let reports = verify(
            &config,
            &VerifyOptions {
                max_listed: 5,
                batch_rows: BATCH_ROWS,
                ..VerifyOptions::default()
            },
        )
        .await?;
        let status = engine.status().await;
        let figures = figures(&status, &loaded, &reports, sampler.peak(), pool_size);
        out.say("");
        out.say(&report::render(&figures));
        out.say(
            "drift: records a primary poll missed because their transaction committed after the window \
             was read; the secondary poll re-read the window and repaired them. The demo polls without \
             waiting for latestDateCovered (as Heroku Connect's primary poll does) so that there is drift \
             to catch; `driftless run` honours it by default.",
        );
        match figures.differences() {
            0 => {
                out.say("verify: Salesforce and Postgres match record by record (0 differences)");
                Ok(())
            }
            n => {
                for r in &reports {
                    for (kind, sfid) in &r.examples {
                        out.say(&format!("  {}: {kind} {sfid}", r.object));
                    }
                }
                Err(DemoError::Differences(n))
            }
        }
    })
    .await;
    // On Ctrl-C the simulator may already be gone (its listener handles SIGINT too), and the
    // engine's requests in flight retry against it: bounded, so the database is still dropped.
    if tokio::time::timeout(STOP_TIMEOUT, engine.stop())
        .await
        .is_err()
    {
        tracing::warn!("the engine did not stop in time; it ends with the process");
    }
    drop(sampler);
    result
}

/// Per mapping, the counters when the initial load ended: the incremental figures are what
/// came after.
type Baseline = BTreeMap<String, (i64, i64)>;

struct Steps<'a> {
    opts: &'a DemoOptions,
    out: &'a Out,
    sim: &'a Sim,
    engine: &'a NodeHandle,
    pg: &'a tokio_postgres::Client,
    db_url: &'a str,
}

impl Steps<'_> {
    async fn initial_load(&self) -> Result<Baseline, DemoError> {
        let mut bars: Vec<_> = self
            .opts
            .dataset
            .iter()
            .map(|(object, n)| (object.clone(), self.out.load_bar(object, *n)))
            .collect();
        let deadline = Deadline::new("the initial load", LOAD_TIMEOUT);
        let status = loop {
            let status = self.engine.status().await;
            let mut all_done = true;
            for (object, bar) in bars.iter_mut() {
                let m = status.mappings.iter().find(|m| &m.object == object);
                let done =
                    m.is_some_and(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some());
                bar.set(table_rows(self.pg, object).await, done);
                all_done &= done;
            }
            // The read_write mapping starts empty: it has no bar, but its load must end too.
            let expected = self.opts.dataset.len() + usize::from(self.opts.write_back);
            all_done &= status.mappings.len() == expected
                && status
                    .mappings
                    .iter()
                    .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some());
            if all_done {
                break status;
            }
            deadline.tick(TICK).await?;
        };
        Ok(status
            .mappings
            .iter()
            .map(|m| (m.object.clone(), (m.primary.records, m.api_calls)))
            .collect())
    }

    /// Runs the workload for `--seconds`, then waits until every window up to its end has been
    /// read by a primary poll and re-read by its secondary poll.
    async fn workload(&self, baseline: &Baseline) -> Result<(), DemoError> {
        for spec in scenario::workloads(&self.opts.dataset) {
            self.sim.start_workload(&spec).await?;
        }
        let app = match self.opts.write_back {
            true => Some(App::start(self.db_url).await?),
            false => None,
        };
        self.out.say(&format!(
            "workload: inserts, updates and deletes for {} s, 5% of them in transactions that commit 1-4 s late",
            self.opts.seconds
        ));
        let mut line = self.out.live_line();
        let until = Instant::now() + Duration::from_secs(self.opts.seconds);
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now()).as_secs();
            line.set(live(
                &self.engine.status().await,
                baseline,
                &format!("{left} s of workload left"),
            ));
            tokio::time::sleep(TICK).await;
        }
        self.sim.stop_workload().await?;
        let inserted = match app {
            Some(app) => Some(app.stop().await?),
            None => None,
        };
        let counts = self.sim.workload_counts().await?;
        let ops: u64 = counts["objects"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.values())
            .map(|c| {
                ["inserts", "updates", "deletes", "undeletes"]
                    .iter()
                    .filter_map(|k| c[*k].as_u64())
                    .sum::<u64>()
            })
            .sum();
        self.out.say(&format!(
            "workload: {} operations, {} of them in long transactions; waiting for one more secondary cycle",
            report::group(ops as i64),
            report::group(counts["long_transactions"]["committed"].as_i64().unwrap_or(0)),
        ));
        if let Some(n) = inserted {
            self.out.say(&format!(
                "application: inserted {} {WRITE_BACK_OBJECT} rows in Postgres (and updated a third of them)",
                report::group(n as i64)
            ));
            let deadline = Deadline::new("write-back to finish", CATCH_UP_TIMEOUT);
            loop {
                let s = self.engine.status().await;
                line.set(live(&s, baseline, "writing back"));
                if s.mappings.iter().all(|m| m.writes.pending == 0) {
                    break;
                }
                deadline.tick(TICK).await?;
            }
        }
        // Every transaction has committed; a window that starts a second from now holds none.
        let stopped = Utc::now() + chrono::Duration::seconds(1);
        let deadline = Deadline::new("windows past the workload", CATCH_UP_TIMEOUT);
        loop {
            let s = self.engine.status().await;
            line.set(live(&s, baseline, "catching up"));
            if s.mappings
                .iter()
                .all(|m| synced_past(m.synced_through.as_deref(), stopped))
            {
                break;
            }
            deadline.tick(TICK).await?;
        }
        let deadline = Deadline::new("one more secondary cycle", CATCH_UP_TIMEOUT);
        loop {
            let s = self.engine.status().await;
            line.set(live(&s, baseline, "waiting for the last secondary polls"));
            if pending_secondary(self.pg, stopped).await? == 0 {
                break;
            }
            deadline.tick(TICK).await?;
        }
        line.finish(live(&self.engine.status().await, baseline, "done"));
        Ok(())
    }
}

fn synced_past(synced_through: Option<&str>, t: DateTime<Utc>) -> bool {
    synced_through
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .is_some_and(|s| s > t)
}

/// Rows in the mapping's table so far (0 before the engine creates it).
async fn table_rows(pg: &tokio_postgres::Client, object: &str) -> u64 {
    let sql = format!("SELECT count(*) FROM salesforce.{}", object.to_lowercase());
    pg.query_one(&sql, &[])
        .await
        .map(|r| r.get::<_, i64>(0).max(0) as u64)
        .unwrap_or(0)
}

/// Primary windows before `t` whose secondary poll has not run yet.
async fn pending_secondary(
    pg: &tokio_postgres::Client,
    t: DateTime<Utc>,
) -> Result<i64, DemoError> {
    let table = driftless_core::state::WINDOWS_TABLE;
    pg.query_one(
        &format!("SELECT count(*) FROM salesforce.{table} WHERE window_start < $1 AND secondary_done_at IS NULL"),
        &[&t],
    )
    .await
    .map(|r| r.get(0))
    .map_err(|e| DemoError::Postgres(format!("{table}: {e}")))
}

fn live(s: &StatusDoc, baseline: &Baseline, tail: &str) -> String {
    let changes: i64 = s
        .mappings
        .iter()
        .map(|m| m.primary.records - baseline.get(&m.object).map_or(0, |b| b.0))
        .sum();
    let drift: i64 = s.mappings.iter().map(|m| m.secondary.drift_records).sum();
    let api: i64 = s.mappings.iter().map(|m| m.api_calls).sum();
    let secondary: i64 = s.mappings.iter().map(|m| m.secondary.polls).sum();
    let written: i64 = s.mappings.iter().map(|m| m.writes.sent).sum();
    format!(
        "synced {} changes · {} secondary polls caught {} drifted records · {} written back · {} API calls · {tail}",
        report::group(changes),
        report::group(secondary),
        report::group(drift),
        report::group(written),
        report::group(api)
    )
}

fn figures(
    status: &StatusDoc,
    baseline: &Baseline,
    reports: &[driftless_node::verify::MappingReport],
    peak_connections: i64,
    db_pool_size: u32,
) -> Figures {
    Figures {
        mappings: status
            .mappings
            .iter()
            .map(|m| {
                let (loaded, _) = baseline.get(&m.object).copied().unwrap_or_default();
                MappingFigures {
                    object: m.object.clone(),
                    loaded,
                    changes_synced: m.primary.records - loaded,
                    drift_caught: m.secondary.drift_records,
                    api_calls: m.api_calls,
                    primary_bulk_jobs: m.primary.bulk_jobs,
                    secondary_bulk_jobs: m.secondary.bulk_jobs,
                    write_backs: (m.object == WRITE_BACK_OBJECT).then_some(m.writes.sent),
                    differences: reports
                        .iter()
                        .filter(|r| r.object == m.object)
                        .map(|r| r.differences())
                        .sum(),
                }
            })
            .collect(),
        peak_connections,
        db_pool_size,
    }
}
