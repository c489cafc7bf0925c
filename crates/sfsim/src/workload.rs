//! Background workloads started through `/_sim/workload`: a steady stream of inserts, updates,
//! deletes and undeletes on one object, a fraction of them in long transactions that commit
//! seconds after their SystemModstamp, which is what makes drift.

use crate::dataset;
use crate::store::{is_deleted, Org, Txn};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub object: String,
    #[serde(default)]
    pub inserts_per_sec: f64,
    #[serde(default)]
    pub updates_per_sec: f64,
    #[serde(default)]
    pub deletes_per_sec: f64,
    #[serde(default)]
    pub undeletes_per_sec: f64,
    #[serde(default)]
    pub long_txn_fraction: f64,
    /// Commit delay of a long transaction, drawn uniformly from [min, max] ms.
    #[serde(default)]
    pub long_txn_ms: Option<[u64; 2]>,
}

impl WorkloadSpec {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("inserts_per_sec", self.inserts_per_sec),
            ("updates_per_sec", self.updates_per_sec),
            ("deletes_per_sec", self.deletes_per_sec),
            ("undeletes_per_sec", self.undeletes_per_sec),
        ] {
            if !(0.0..=100_000.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 100000, got {rate}"));
            }
        }
        if !(0.0..=1.0).contains(&self.long_txn_fraction) {
            return Err(format!(
                "long_txn_fraction must be between 0 and 1, got {}",
                self.long_txn_fraction
            ));
        }
        if let Some([lo, hi]) = self.long_txn_ms {
            if lo > hi {
                return Err(format!(
                    "long_txn_ms [{lo},{hi}]: the first bound must not exceed the second"
                ));
            }
        }
        if self.long_txn_fraction > 0.0 && self.long_txn_ms.is_none() {
            return Err("long_txn_fraction needs long_txn_ms [min,max]".into());
        }
        Ok(())
    }
}

#[derive(Default, Serialize, Clone, Copy)]
pub struct OpCounts {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub undeletes: u64,
    /// Operations skipped because the chosen record was locked or gone.
    pub skipped: u64,
}

#[derive(Default)]
struct Counters {
    ops: Mutex<BTreeMap<String, OpCounts>>,
    long_opened: AtomicU64,
    long_committed: AtomicU64,
}

#[derive(Default)]
pub struct Workloads {
    running: Mutex<HashMap<usize, (WorkloadSpec, JoinHandle<()>)>>,
    counters: Arc<Counters>,
}

#[derive(Clone, Copy)]
enum Kind {
    Insert,
    Update,
    Delete,
    Undelete,
}

impl Workloads {
    /// Starts (or replaces) the workload on the spec's object.
    pub fn start(&self, org: &Arc<Org>, spec: WorkloadSpec) -> Result<(), String> {
        spec.validate()?;
        let object = org.object_index(&spec.object).map_err(|e| e.message)?;
        if !org.schema.objects[object].writable {
            return Err(format!("object '{}' is read-only", spec.object));
        }
        let mut spec = spec;
        spec.object = org.schema.objects[object].name.clone();
        let task = tokio::spawn(run(
            Arc::clone(org),
            object,
            spec.clone(),
            Arc::clone(&self.counters),
        ));
        if let Some((_, old)) = self.running.lock().insert(object, (spec, task)) {
            old.abort();
        }
        Ok(())
    }

    /// Stops every workload and returns once no transaction is left open.
    pub async fn stop_all(&self, org: &Org) {
        let tasks: Vec<_> = self.running.lock().drain().map(|(_, (_, t))| t).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        org.wait_no_open_txns().await;
    }

    pub fn to_json(&self) -> serde_json::Value {
        let running: Vec<WorkloadSpec> = self
            .running
            .lock()
            .values()
            .map(|(s, _)| s.clone())
            .collect();
        serde_json::json!({
            "objects": *self.counters.ops.lock(),
            "long_transactions": {
                "opened": self.counters.long_opened.load(Relaxed),
                "committed": self.counters.long_committed.load(Relaxed),
            },
            "running": running,
        })
    }
}

async fn run(org: Arc<Org>, object: usize, spec: WorkloadSpec, counters: Arc<Counters>) {
    const TICK: Duration = Duration::from_millis(20);
    let mut rng = ChaCha8Rng::from_entropy();
    let mut due = [0.0f64; 4];
    let rates = [
        spec.inserts_per_sec,
        spec.updates_per_sec,
        spec.deletes_per_sec,
        spec.undeletes_per_sec,
    ];
    let kinds = [Kind::Insert, Kind::Update, Kind::Delete, Kind::Undelete];
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        interval.tick().await;
        let now = tokio::time::Instant::now();
        let dt = (now - last).as_secs_f64();
        last = now;
        for k in 0..4 {
            due[k] += rates[k] * dt;
            while due[k] >= 1.0 {
                due[k] -= 1.0;
                one_op(&org, object, &spec, kinds[k], &counters, &mut rng);
            }
        }
    }
}

fn one_op(
    org: &Arc<Org>,
    object: usize,
    spec: &WorkloadSpec,
    kind: Kind,
    counters: &Arc<Counters>,
    rng: &mut ChaCha8Rng,
) {
    let mut txn = org.begin();
    let ok = match kind {
        Kind::Insert => org
            .create(&mut txn, object, dataset::new_record(org, object, rng))
            .is_ok(),
        Kind::Update => pick(org, object, false, rng).is_some_and(|id| {
            let values = update_values(org, object, rng);
            org.update(&mut txn, object, &id, values).is_ok()
        }),
        Kind::Delete => pick(org, object, false, rng)
            .is_some_and(|id| org.delete(&mut txn, object, &id).is_ok()),
        Kind::Undelete => pick(org, object, true, rng)
            .is_some_and(|id| org.undelete(&mut txn, object, &id).is_ok()),
    };
    {
        let mut ops = counters.ops.lock();
        let c = ops.entry(spec.object.clone()).or_default();
        match (ok, kind) {
            (false, _) => c.skipped += 1,
            (true, Kind::Insert) => c.inserts += 1,
            (true, Kind::Update) => c.updates += 1,
            (true, Kind::Delete) => c.deletes += 1,
            (true, Kind::Undelete) => c.undeletes += 1,
        }
    }
    if !ok {
        org.rollback(txn);
        return;
    }
    let long = spec.long_txn_fraction > 0.0 && rng.gen_bool(spec.long_txn_fraction);
    match (long, spec.long_txn_ms) {
        (true, Some([lo, hi])) => commit_late(
            org,
            txn,
            Duration::from_millis(rng.gen_range(lo..=hi)),
            counters,
        ),
        _ => org.commit(txn),
    }
}

fn commit_late(org: &Arc<Org>, txn: Txn, delay: Duration, counters: &Arc<Counters>) {
    counters.long_opened.fetch_add(1, Relaxed);
    let (org, counters) = (Arc::clone(org), Arc::clone(counters));
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        org.commit(txn);
        counters.long_committed.fetch_add(1, Relaxed);
    });
}

/// A random committed record that is (or, for undeletes, is not) live and not locked.
fn pick(org: &Org, object: usize, deleted: bool, rng: &mut ChaCha8Rng) -> Option<String> {
    let max = org.next_seq(object).saturating_sub(1);
    if max == 0 {
        return None;
    }
    for _ in 0..20 {
        let seq = rng.gen_range(1..=max);
        if org.is_locked(object, seq) {
            continue;
        }
        let found = org.read(|t| {
            t[object]
                .get(seq)
                .filter(|r| is_deleted(r) == deleted)
                .map(|r| crate::store::record_id(r).to_string())
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// One to three updateable fields with fresh values; required fields never go null.
fn update_values(
    org: &Org,
    object: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, crate::value::Value)> {
    let def = &org.schema.objects[object];
    let candidates: Vec<usize> = def
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.updateable && !f.unique && f.reference_to.is_empty())
        .map(|(i, _)| i)
        .collect();
    let n = rng.gen_range(1..=3.min(candidates.len().max(1)));
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(&i) = candidates.get(rng.gen_range(0..candidates.len().max(1))) else {
            break;
        };
        let f = &def.fields[i];
        let mut v = dataset::value_for(def, f, rng.gen(), rng);
        if v.is_null() && !f.nillable {
            v = dataset::value_for(def, f, rng.gen(), rng);
            if v.is_null() {
                continue;
            }
        }
        if !out.iter().any(|(j, _)| *j == i) {
            out.push((i, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[tokio::test]
    async fn workload_writes_and_long_transactions_commit_before_stop_returns() {
        let org = Org::new(Schema::standard());
        dataset::generate_all(&org, &[("Account".into(), 200)], 3).unwrap();
        let w = Workloads::default();
        let spec: WorkloadSpec = serde_json::from_value(serde_json::json!({
            "object":"account","inserts_per_sec":100,"updates_per_sec":200,"deletes_per_sec":50,
            "undeletes_per_sec":20,"long_txn_fraction":0.2,"long_txn_ms":[200,400]}))
        .unwrap();
        w.start(&org, spec).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let j = w.to_json();
            let acc = &j["objects"]["Account"];
            let done = ["inserts", "updates", "deletes", "undeletes"]
                .iter()
                .all(|k| acc[k].as_u64().unwrap_or(0) > 0)
                && j["long_transactions"]["opened"].as_u64().unwrap_or(0) > 0;
            if done {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "workload did not run: {j}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w.stop_all(&org).await;
        assert_eq!(org.open_txn_count(), 0);
        let j = w.to_json();
        assert_eq!(
            j["long_transactions"]["opened"],
            j["long_transactions"]["committed"]
        );
        assert!(j["running"].as_array().unwrap().is_empty());
    }

    #[test]
    fn specs_are_validated() {
        let bad = |v: serde_json::Value| {
            serde_json::from_value::<WorkloadSpec>(v)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate())
        };
        assert!(bad(serde_json::json!({"object":"Account","long_txn_fraction":2.0})).is_err());
        assert!(bad(serde_json::json!({"object":"Account","long_txn_fraction":0.1})).is_err());
        assert!(bad(serde_json::json!({"object":"Account","bogus":1})).is_err());
        assert!(bad(serde_json::json!({"object":"Account","inserts_per_sec":5})).is_ok());
    }
}
