//! The org store: every object's records, the transactions that change them, and the commit-lag
//! semantics that make drift possible.
//!
//! A write runs inside a [`Txn`]. Its changes are stamped with the transaction's start second and
//! become visible only when it commits, so a transaction that commits late leaves records whose
//! SystemModstamp lies inside windows that readers have already passed. Open transactions hold
//! `latestDateCovered` back to their start, as Salesforce documents.

mod formulas;
pub mod input;
mod txn;

pub use txn::{ChangeKind, CommitObserver, CommittedChange, Txn, WriteOp};

use crate::error::SfError;
use crate::ids;
use crate::schema::{Schema, F_ID, F_IS_DELETED, F_SYSTEM_MODSTAMP};
use crate::value::Value;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// One committed version of a record: its values in the order of its object's fields. Versions
/// are immutable and shared, so a query result is a list of pointers that later commits do not
/// disturb: that is the snapshot a query or bulk batch sees.
pub type Record = Arc<[Value]>;

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Default)]
pub struct Table {
    /// Indexed by sequence number - 1. `None` until the creating transaction commits, and after
    /// a purge from the recycle bin.
    rows: Vec<Option<Record>>,
    /// Unique external-id values → sequence number, reserved when a create is staged.
    external_ids: HashMap<(usize, String), u64>,
    /// When the recycle bin was last emptied: getDeleted's `earliestDateAvailable`.
    pub purged_through: Option<i64>,
    /// Who points at whom through the lookups formulas follow (see `formulas.rs`).
    referrers: formulas::Referrers,
}

impl Table {
    pub fn get(&self, seq: u64) -> Option<&Record> {
        self.rows.get((seq as usize).checked_sub(1)?)?.as_ref()
    }

    /// Every committed record, deleted ones included, in Id order.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.rows.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[derive(Default)]
struct OpenTxns {
    /// Transaction id → start second.
    started: BTreeMap<u64, i64>,
    /// (object, seq) → transaction holding the record's lock.
    locks: HashMap<(usize, u64), u64>,
    next_id: u64,
    opened_total: u64,
    committed_total: u64,
}

pub struct Org {
    pub schema: Schema,
    pub org_id: String,
    pub admin_user_id: String,
    tables: RwLock<Vec<Table>>,
    /// Next sequence number per object; allocated at staging so a create can answer its Id
    /// before it commits.
    next_seq: Mutex<Vec<u64>>,
    txns: Mutex<OpenTxns>,
    txn_closed: Notify,
    commit_observer: std::sync::OnceLock<Arc<dyn CommitObserver>>,
    formulas: formulas::Formulas,
    /// Seconds the clock `TODAY()`/`NOW()` read is ahead of real time (`POST /_sim/clock`).
    clock_offset: AtomicI64,
    /// The day (of that clock) time-dependent formulas were last computed for.
    formula_day: AtomicI64,
}

impl Org {
    pub fn new(schema: Schema) -> Arc<Org> {
        let n = schema.objects.len();
        let org = Org {
            org_id: ids::make("00D", 1),
            admin_user_id: ids::make("005", 1),
            tables: RwLock::new((0..n).map(|_| Table::default()).collect()),
            next_seq: Mutex::new(vec![1; n]),
            txns: Mutex::new(OpenTxns::default()),
            txn_closed: Notify::new(),
            commit_observer: std::sync::OnceLock::new(),
            formulas: formulas::Formulas::new(&schema),
            clock_offset: AtomicI64::new(0),
            formula_day: AtomicI64::new(day_of(chrono::Utc::now())),
            schema,
        };
        let org = Arc::new(org);
        org.seed_system_records();
        org
    }

    /// The admin user and the Organization row, which exist in every org.
    fn seed_system_records(&self) {
        let mut txn = self.begin();
        for (object, values) in [
            (
                "User",
                vec![
                    ("Username", Value::text("admin@driftless.sim")),
                    ("LastName", Value::text("Admin")),
                    ("Email", Value::text("admin@driftless.sim")),
                    ("IsActive", Value::Bool(true)),
                ],
            ),
            (
                "Organization",
                vec![
                    ("Name", Value::text("Driftless Simulated Org")),
                    ("IsSandbox", Value::Bool(false)),
                    ("OrganizationType", Value::text("Developer Edition")),
                    ("InstanceName", Value::text("SIM1")),
                ],
            ),
        ] {
            let idx = self.schema.object_index(object).expect("standard object");
            let fields = values
                .into_iter()
                .map(|(name, v)| {
                    (
                        self.schema.objects[idx].field_index(name).expect("field"),
                        v,
                    )
                })
                .collect();
            self.stage_system_create(&mut txn, idx, fields);
        }
        self.commit(txn);
        // The User record also carries the derived Name.
        let user = self.schema.object_index("User").expect("User");
        let name_idx = self.schema.objects[user].field_index("Name").expect("Name");
        let mut tables = self.tables.write();
        if let Some(Some(rec)) = tables[user].rows.get_mut(0) {
            let mut v = rec.to_vec();
            v[name_idx] = Value::text("Sim Admin");
            *rec = v.into();
        }
    }

    /// Installs the one observer told of every later commit (Change Data Capture).
    pub fn set_commit_observer(&self, observer: Arc<dyn CommitObserver>) {
        if self.commit_observer.set(observer).is_err() {
            tracing::warn!("a commit observer was already installed; keeping the first");
        }
    }

    pub fn object_index(&self, name: &str) -> Result<usize, SfError> {
        self.schema
            .object_index(name)
            .ok_or_else(|| SfError::invalid_type(name))
    }

    /// Reads the committed tables. Keep the closure short: commits wait for it.
    pub fn read<R>(&self, f: impl FnOnce(&[Table]) -> R) -> R {
        f(&self.tables.read())
    }

    /// The committed record with this Id, deleted or not.
    pub fn get_by_id(&self, object: usize, id: &str) -> Option<Record> {
        let (prefix, seq) = ids::parse(id)?;
        if prefix != self.schema.objects[object].key_prefix {
            return None;
        }
        self.tables.read()[object].get(seq).cloned()
    }

    /// Resolves a client-given Id to (object, seq) when the simulator minted it.
    pub fn locate(&self, id: &str) -> Option<(usize, u64)> {
        let id18 = ids::normalize(id)?;
        let (prefix, seq) = ids::parse(&id18)?;
        Some((self.schema.object_by_prefix(prefix)?, seq))
    }

    /// Sequence number of the committed record whose unique external id equals `value`.
    pub fn find_by_external_id(&self, object: usize, field: usize, value: &str) -> Option<u64> {
        self.tables.read()[object]
            .external_ids
            .get(&(field, value.to_string()))
            .copied()
    }

    /// Count of committed records, deleted ones excluded unless `all`.
    pub fn count(&self, object: usize, all: bool) -> usize {
        self.tables.read()[object]
            .iter()
            .filter(|r| all || !is_deleted(r))
            .count()
    }

    /// Start second of the oldest open transaction, if any: the bound on `latestDateCovered`.
    pub fn oldest_open_txn_start(&self) -> Option<i64> {
        self.txns.lock().started.values().min().copied()
    }

    pub fn open_txn_count(&self) -> usize {
        self.txns.lock().started.len()
    }

    /// Transactions opened and committed since start (long ones included).
    pub fn txn_totals(&self) -> (u64, u64) {
        let t = self.txns.lock();
        (t.opened_total, t.committed_total)
    }

    /// Waits until no transaction is open.
    pub async fn wait_no_open_txns(&self) {
        loop {
            let notified = self.txn_closed.notified();
            if self.open_txn_count() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Empties the recycle bin of an object: its deleted rows are gone for queryAll too, and
    /// getDeleted reports the purge through `earliestDateAvailable`.
    pub fn empty_recycle_bin(&self, object: usize) -> usize {
        let now = now_secs();
        let mut tables = self.tables.write();
        let table = &mut tables[object];
        let mut purged = 0;
        for slot in table.rows.iter_mut() {
            if slot.as_ref().is_some_and(is_deleted) {
                *slot = None;
                purged += 1;
            }
        }
        table.external_ids.retain(|_, seq| {
            table
                .rows
                .get(*seq as usize - 1)
                .is_some_and(|r| r.is_some())
        });
        table.purged_through = Some(now);
        purged
    }
}

fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

impl Org {
    /// The time formulas see: real time plus the offset `POST /_sim/clock` set. SystemModstamps
    /// stay on real time, so moving this clock never disturbs sync windows.
    pub fn formula_now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.clock_offset.load(Ordering::Relaxed))
    }

    pub fn clock_offset_secs(&self) -> i64 {
        self.clock_offset.load(Ordering::Relaxed)
    }

    /// Moves the formula clock to `offset_secs` ahead of real time and recomputes every
    /// time-dependent formula at once; returns how many records' values changed.
    pub fn set_clock_offset(&self, offset_secs: i64) -> usize {
        let mut tables = self.tables.write();
        self.clock_offset.store(offset_secs, Ordering::Relaxed);
        let now = self.formula_now();
        self.formula_day.store(day_of(now), Ordering::Relaxed);
        self.formulas.refresh_time_dependent(&mut tables, now)
    }

    /// Recomputes time-dependent formulas when the formula clock's date has changed since they
    /// were last computed (a real midnight); cheap when it has not.
    pub fn refresh_formulas_if_day_changed(&self) -> usize {
        let now = self.formula_now();
        let day = day_of(now);
        if self.formula_day.load(Ordering::Relaxed) == day {
            return 0;
        }
        let mut tables = self.tables.write();
        self.formula_day.store(day, Ordering::Relaxed);
        self.formulas.refresh_time_dependent(&mut tables, now)
    }
}

pub fn is_deleted(r: &Record) -> bool {
    matches!(r[F_IS_DELETED], Value::Bool(true))
}

pub fn record_id(r: &Record) -> &str {
    r[F_ID].as_str().unwrap_or_default()
}

pub fn system_modstamp(r: &Record) -> i64 {
    r[F_SYSTEM_MODSTAMP].as_datetime().unwrap_or_default()
}

impl Org {
    /// Appends already-committed records without transactions: the dataset generator's fast
    /// path. Each row gets its Id, and its stamps from `stamp(seq)`; rows hold every field.
    pub fn load(&self, object: usize, rows: impl IntoIterator<Item = (Vec<Value>, i64)>) -> usize {
        let def = &self.schema.objects[object];
        let unique: Vec<usize> = def
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.unique)
            .map(|(i, _)| i)
            .collect();
        let mut next = self.next_seq.lock();
        let mut tables = self.tables.write();
        let with_formulas = self.formulas.has_any(object);
        let now = self.formula_now();
        let mut n = 0;
        for (mut row, stamp) in rows {
            let seq = next[object];
            next[object] += 1;
            row[F_ID] = Value::text(ids::make(&def.key_prefix, seq));
            row[F_IS_DELETED] = Value::Bool(false);
            for i in [
                crate::schema::F_CREATED_DATE,
                crate::schema::F_LAST_MODIFIED_DATE,
                F_SYSTEM_MODSTAMP,
            ] {
                row[i] = Value::DateTime(stamp);
            }
            for i in [
                crate::schema::F_CREATED_BY_ID,
                crate::schema::F_LAST_MODIFIED_BY_ID,
            ] {
                row[i] = Value::text(self.admin_user_id.clone());
            }
            if with_formulas {
                self.formulas.compute(object, &mut row, &tables, now);
            }
            let table = &mut tables[object];
            self.formulas.index(object, seq, None, &row, table);
            for &u in &unique {
                if let Value::Text(s) = &row[u] {
                    table.external_ids.insert((u, s.to_string()), seq);
                }
            }
            let slot = seq as usize - 1;
            if table.rows.len() <= slot {
                table.rows.resize(slot + 1, None);
            }
            table.rows[slot] = Some(Record::from(row));
            n += 1;
        }
        n
    }

    /// Sequence numbers of committed live records of an object (for the workload's picks).
    pub fn next_seq(&self, object: usize) -> u64 {
        self.next_seq.lock()[object]
    }
}
