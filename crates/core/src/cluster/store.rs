//! Cluster state in the state database (`[coordinator] state_database_url`): workers with their
//! leases, and which worker runs which mapping with which owner epoch. A restarted or standby
//! coordinator reads everything back from here, so it loses nothing (DESIGN.md "Across processes").
//!
//! Times come from the database's clock (`clock_timestamp()`), never the coordinator's, so a
//! standby on another machine judges leases by the same clock as the coordinator it replaces.
//! Leases travel to workers as durations for the same reason.
//!
//! Owner epochs come from one sequence for the whole cluster: a reassigned mapping always gets a
//! number larger than any epoch handed out before, even for a mapping that was removed and added
//! again, so `state::claim` in the target database accepts it and fences the previous owner. The
//! sequence starts at the creation time in microseconds rather than at 1: the target databases
//! remember the epochs they saw, so if the state database is ever lost and created anew, its
//! epochs must still be larger than the old ones, or every `claim` would fail. That holds as long
//! as the old database handed out fewer epochs than microseconds passed, which is always.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient, Row};

use super::assign::Assignment;
use crate::ident::{Ident, QualifiedName};

pub const WORKERS_TABLE: &str = "_driftless_workers";
pub const ASSIGNMENTS_TABLE: &str = "_driftless_assignments";
pub const OWNER_EPOCH_SEQUENCE: &str = "_driftless_owner_epoch_seq";
pub const PAUSED_TABLE: &str = "_driftless_paused_connections";

/// `pg_try_advisory_lock` key of the active coordinator: "driftles" in ASCII, unlikely to collide
/// with an application's own advisory locks in a shared database.
pub const STANDBY_LOCK_KEY: i64 = 0x6472_6966_746c_6573;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The worker is unknown, its lease ran out, or its name registered again since: it must stop
    /// every mapping and register anew.
    #[error("worker {worker_id}: lease {lease_epoch} is no longer valid")]
    LeaseLost { worker_id: i64, lease_epoch: i64 },
    #[error("cluster state query failed: {}", crate::pgerror::describe(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// A lease the coordinator granted or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub worker_id: i64,
    pub lease_epoch: i64,
    /// Time left, measured by the database when it granted the lease.
    pub expires_in: Duration,
}

/// One row of `_driftless_workers`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    pub id: i64,
    pub name: String,
    pub lease_epoch: i64,
    pub version: String,
    pub capacity: u32,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    pub lease_expires: DateTime<Utc>,
}

/// One row of `_driftless_assignments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAssignment {
    pub connection: String,
    pub object: String,
    pub worker: String,
    pub owner_epoch: i64,
    pub assigned_at: DateTime<Utc>,
    /// Bumped by every `ctl reload` of the mapping; its worker reloads when it sees it grow.
    pub reload_requested: i64,
}

impl StoredAssignment {
    pub fn assignment(&self) -> Assignment {
        Assignment {
            connection: self.connection.clone(),
            object: self.object.clone(),
            worker: self.worker.clone(),
        }
    }
}

/// The cluster tables in one schema of the state database.
#[derive(Debug, Clone)]
pub struct ClusterStore {
    workers: QualifiedName,
    assignments: QualifiedName,
    epochs: QualifiedName,
    paused: QualifiedName,
}

const WORKER_COLUMNS: &str =
    "id, name, lease_epoch, version, capacity, registered_at, last_heartbeat, lease_expires";
const ASSIGNMENT_COLUMNS: &str =
    "connection, object_name, worker, owner_epoch, assigned_at, reload_requested";

/// Where the cluster tables go by default: their own schema, so a state database that is also a
/// target database keeps them apart from the application's tables.
pub const DEFAULT_SCHEMA: &str = "driftless";

impl Default for ClusterStore {
    fn default() -> ClusterStore {
        ClusterStore::new(&Ident::internal(DEFAULT_SCHEMA))
    }
}

impl ClusterStore {
    pub fn new(schema: &Ident) -> ClusterStore {
        ClusterStore {
            workers: QualifiedName::new(schema, &Ident::internal(WORKERS_TABLE)),
            assignments: QualifiedName::new(schema, &Ident::internal(ASSIGNMENTS_TABLE)),
            epochs: QualifiedName::new(schema, &Ident::internal(OWNER_EPOCH_SEQUENCE)),
            paused: QualifiedName::new(schema, &Ident::internal(PAUSED_TABLE)),
        }
    }

    /// Creates the schema, tables and epoch sequence if missing; safe to run on every start.
    pub async fn create_tables(&self, client: &impl GenericClient) -> Result<(), ClusterError> {
        let (w, a, e) = (&self.workers, &self.assignments, &self.epochs);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
DO $$ BEGIN
    EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s START WITH %s', '{e}',
        floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
END $$;
CREATE TABLE IF NOT EXISTS {w} (
    name text PRIMARY KEY,
    id bigint GENERATED BY DEFAULT AS IDENTITY UNIQUE,
    lease_epoch bigint NOT NULL DEFAULT 1,
    version text NOT NULL DEFAULT '',
    capacity integer NOT NULL DEFAULT 1 CHECK (capacity >= 0),
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_heartbeat timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_expires timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {a} (
    connection text NOT NULL,
    object_name text NOT NULL,
    worker text NOT NULL,
    owner_epoch bigint NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (connection, object_name)
);
ALTER TABLE {a} ADD COLUMN IF NOT EXISTS reload_requested bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS \"_driftless_assignments_worker\" ON {a} (worker);
CREATE TABLE IF NOT EXISTS {p} (
    connection text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT clock_timestamp()
);",
                schema = w.schema,
                p = self.paused,
            ))
            .await?;
        Ok(())
    }

    /// A worker process starts: a new lease (`lease_epoch` + 1 for a known name, so heartbeats of
    /// an earlier incarnation fail), and, in the same statement, new owner epochs for every
    /// mapping still assigned to that name, because the earlier incarnation may still be running
    /// them with the old epochs.
    pub async fn register(
        &self,
        client: &impl GenericClient,
        name: &str,
        version: &str,
        capacity: u32,
        lease: Duration,
    ) -> Result<Lease, ClusterError> {
        let sql = format!(
            "WITH w AS (
    INSERT INTO {w} AS w (name, version, capacity, lease_expires)
    VALUES ($1, $2, $3, clock_timestamp() + $4::bigint * interval '1 millisecond')
    ON CONFLICT (name) DO UPDATE SET lease_epoch = w.lease_epoch + 1, version = EXCLUDED.version,
        capacity = EXCLUDED.capacity, registered_at = clock_timestamp(),
        last_heartbeat = clock_timestamp(), lease_expires = EXCLUDED.lease_expires
    RETURNING id, lease_epoch, lease_expires
), fenced AS (
    UPDATE {a} SET owner_epoch = nextval('{e}'), assigned_at = clock_timestamp()
    WHERE worker = $1
    RETURNING 1
)
SELECT id, lease_epoch, {remaining} FROM w",
            w = self.workers,
            a = self.assignments,
            e = self.epochs,
            remaining = REMAINING_MS,
        );
        let capacity = i32::try_from(capacity).unwrap_or(i32::MAX);
        let row = client
            .query_one(&sql, &[&name, &version, &capacity, &millis(lease)])
            .await?;
        Ok(lease_from(&row))
    }

    /// Renews a lease. Fails with [`ClusterError::LeaseLost`] for an unknown worker, a lease of an
    /// earlier incarnation, or one that already ran out: by then the coordinator may have moved the
    /// worker's connections, so it must start over with [`ClusterStore::register`].
    pub async fn heartbeat(
        &self,
        client: &impl GenericClient,
        worker_id: i64,
        lease_epoch: i64,
        lease: Duration,
    ) -> Result<Lease, ClusterError> {
        let sql = format!(
            "UPDATE {w} SET last_heartbeat = clock_timestamp(),
    lease_expires = clock_timestamp() + $3::bigint * interval '1 millisecond'
WHERE id = $1 AND lease_epoch = $2 AND lease_expires > clock_timestamp()
RETURNING id, lease_epoch, {remaining}",
            w = self.workers,
            remaining = REMAINING_MS,
        );
        match client
            .query_opt(&sql, &[&worker_id, &lease_epoch, &millis(lease)])
            .await?
        {
            Some(row) => Ok(lease_from(&row)),
            None => Err(ClusterError::LeaseLost {
                worker_id,
                lease_epoch,
            }),
        }
    }

    /// A coordinator that just became active gives every registered worker a full lease from
    /// now: while no coordinator was active nobody could renew, and moving every mapping for that
    /// would turn a coordinator restart into a cluster-wide reshuffle. Returns how many workers.
    pub async fn extend_leases(
        &self,
        client: &impl GenericClient,
        lease: Duration,
    ) -> Result<u64, ClusterError> {
        let sql = format!(
            "UPDATE {w} SET lease_expires = GREATEST(lease_expires, \
             clock_timestamp() + $1::bigint * interval '1 millisecond')",
            w = self.workers
        );
        Ok(client.execute(&sql, &[&millis(lease)]).await?)
    }

    /// Graceful shutdown. Returns false when the lease was not current (nothing removed). The
    /// worker's assignments stay until the next [`ClusterStore::persist_assignments`].
    pub async fn deregister(
        &self,
        client: &impl GenericClient,
        worker_id: i64,
        lease_epoch: i64,
    ) -> Result<bool, ClusterError> {
        let sql = format!(
            "DELETE FROM {w} WHERE id = $1 AND lease_epoch = $2",
            w = self.workers
        );
        Ok(client.execute(&sql, &[&worker_id, &lease_epoch]).await? == 1)
    }

    /// Every registered worker, live or not, by name.
    pub async fn workers(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<WorkerRecord>, ClusterError> {
        self.select_workers(client, "true").await
    }

    /// Workers whose lease has not run out, by name: the input of the assignment.
    pub async fn live_workers(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<WorkerRecord>, ClusterError> {
        self.select_workers(client, "lease_expires > clock_timestamp()")
            .await
    }

    /// Workers whose lease ran out, by name.
    pub async fn expired_workers(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<WorkerRecord>, ClusterError> {
        self.select_workers(client, "lease_expires <= clock_timestamp()")
            .await
    }

    /// Deletes the workers whose lease ran out and returns their names. The expiry is re-checked
    /// in the DELETE, so a worker that registered again meanwhile is kept.
    pub async fn remove_expired_workers(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<String>, ClusterError> {
        let sql = format!(
            "DELETE FROM {w} WHERE lease_expires <= clock_timestamp() RETURNING name",
            w = self.workers
        );
        let mut names: Vec<String> = client
            .query(&sql, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn select_workers(
        &self,
        client: &impl GenericClient,
        filter: &str,
    ) -> Result<Vec<WorkerRecord>, ClusterError> {
        let sql = format!(
            "SELECT {WORKER_COLUMNS} FROM {w} WHERE {filter} ORDER BY name",
            w = self.workers
        );
        Ok(client
            .query(&sql, &[])
            .await?
            .iter()
            .map(|r| WorkerRecord {
                id: r.get(0),
                name: r.get(1),
                lease_epoch: r.get(2),
                version: r.get(3),
                capacity: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                registered_at: r.get(5),
                last_heartbeat: r.get(6),
                lease_expires: r.get(7),
            })
            .collect())
    }

    /// Makes `next` the complete assignment, atomically: a mapping that changes worker (or is new)
    /// gets a fresh owner epoch; one that stays keeps its epoch, so its worker is not disturbed;
    /// mappings missing from `next` are removed. Returns what is stored now, by (connection,
    /// object).
    pub async fn persist_assignments(
        &self,
        client: &mut impl GenericClient,
        next: &[Assignment],
    ) -> Result<Vec<StoredAssignment>, ClusterError> {
        let connections: Vec<&str> = next.iter().map(|a| a.connection.as_str()).collect();
        let objects: Vec<&str> = next.iter().map(|a| a.object.as_str()).collect();
        let workers: Vec<&str> = next.iter().map(|a| a.worker.as_str()).collect();
        let tx = client.transaction().await?;
        // Two coordinators should never both persist (the standby lock), but if they ever do, the
        // table lock makes the second wait and apply its whole plan after the first, not mixed.
        tx.batch_execute(&format!(
            "LOCK TABLE {a} IN SHARE ROW EXCLUSIVE MODE",
            a = self.assignments
        ))
        .await?;
        tx.execute(
            &format!(
                "DELETE FROM {a} AS a WHERE NOT EXISTS (
    SELECT 1 FROM unnest($1::text[], $2::text[]) AS n(connection, object_name)
    WHERE n.connection = a.connection AND n.object_name = a.object_name)",
                a = self.assignments
            ),
            &[&connections, &objects],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {a} AS a (connection, object_name, worker, owner_epoch)
SELECT n.connection, n.object_name, n.worker, nextval('{e}')
FROM unnest($1::text[], $2::text[], $3::text[]) AS n(connection, object_name, worker)
LEFT JOIN {a} AS cur USING (connection, object_name)
WHERE cur.worker IS DISTINCT FROM n.worker
ON CONFLICT (connection, object_name) DO UPDATE
SET worker = EXCLUDED.worker, owner_epoch = EXCLUDED.owner_epoch, assigned_at = clock_timestamp()",
                a = self.assignments,
                e = self.epochs
            ),
            &[&connections, &objects, &workers],
        )
        .await?;
        let stored = select_assignments(&tx, &self.assignments, None).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Everything assigned, by (connection, object): what a restarted coordinator starts from.
    pub async fn load_assignments(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<StoredAssignment>, ClusterError> {
        select_assignments(client, &self.assignments, None).await
    }

    /// Connections an admin paused (`ctl pause`): the assignment leaves them out until resumed,
    /// across coordinator restarts.
    pub async fn paused_connections(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<String>, ClusterError> {
        let sql = format!(
            "SELECT connection FROM {p} ORDER BY connection",
            p = self.paused
        );
        Ok(client
            .query(&sql, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Pauses or resumes a connection; returns whether that changed anything.
    pub async fn set_paused(
        &self,
        client: &impl GenericClient,
        connection: &str,
        paused: bool,
    ) -> Result<bool, ClusterError> {
        let sql = if paused {
            format!(
                "INSERT INTO {p} (connection) VALUES ($1) ON CONFLICT DO NOTHING",
                p = self.paused
            )
        } else {
            format!("DELETE FROM {p} WHERE connection = $1", p = self.paused)
        };
        Ok(client.execute(&sql, &[&connection]).await? == 1)
    }

    /// A fresh owner epoch for one mapping on the same worker: the worker sees the new epoch in
    /// its next heartbeat and re-claims the mapping (how `ctl reload` restarts it). Returns the
    /// new epoch, or None when the mapping is not assigned.
    pub async fn bump_epoch(
        &self,
        client: &impl GenericClient,
        connection: &str,
        object: &str,
    ) -> Result<Option<i64>, ClusterError> {
        let sql = format!(
            "UPDATE {a} SET owner_epoch = nextval('{e}'), assigned_at = clock_timestamp() \
             WHERE connection = $1 AND object_name = $2 RETURNING owner_epoch",
            a = self.assignments,
            e = self.epochs
        );
        Ok(client
            .query_opt(&sql, &[&connection, &object])
            .await?
            .map(|r| r.get(0)))
    }

    /// Asks the mapping's worker to reload its table (`ctl reload`); None when the mapping is not
    /// assigned to anyone.
    pub async fn request_reload(
        &self,
        client: &impl GenericClient,
        connection: &str,
        object: &str,
    ) -> Result<Option<i64>, ClusterError> {
        let sql = format!(
            "UPDATE {a} SET reload_requested = reload_requested + 1 \
             WHERE connection = $1 AND lower(object_name) = lower($2) RETURNING reload_requested",
            a = self.assignments
        );
        Ok(client
            .query_opt(&sql, &[&connection, &object])
            .await?
            .map(|r| r.get(0)))
    }

    /// One worker's assignments, for its heartbeat reply.
    pub async fn assignments_of(
        &self,
        client: &impl GenericClient,
        worker: &str,
    ) -> Result<Vec<StoredAssignment>, ClusterError> {
        select_assignments(client, &self.assignments, Some(worker)).await
    }
}

/// Remaining lease in whole milliseconds, never negative.
const REMAINING_MS: &str =
    "GREATEST(0, floor(extract(epoch FROM lease_expires - clock_timestamp()) * 1000))::bigint";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn lease_from(row: &Row) -> Lease {
    Lease {
        worker_id: row.get(0),
        lease_epoch: row.get(1),
        expires_in: Duration::from_millis(u64::try_from(row.get::<_, i64>(2)).unwrap_or(0)),
    }
}

async fn select_assignments(
    client: &impl GenericClient,
    table: &QualifiedName,
    worker: Option<&str>,
) -> Result<Vec<StoredAssignment>, ClusterError> {
    let sql = format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM {table} WHERE $1::text IS NULL OR worker = $1 \
         ORDER BY connection, object_name"
    );
    Ok(client
        .query(&sql, &[&worker])
        .await?
        .iter()
        .map(|r| StoredAssignment {
            connection: r.get(0),
            object: r.get(1),
            worker: r.get(2),
            owner_epoch: r.get(3),
            assigned_at: r.get(4),
            reload_requested: r.get(5),
        })
        .collect())
}

/// Outcome of [`StandbyLock::try_acquire`].
pub enum TryLock {
    /// This process is the active coordinator for as long as it keeps the lock.
    Acquired(StandbyLock),
    /// Another coordinator is active; the connection comes back for the next try.
    Busy(Client),
}

/// The active-coordinator lock: a session-level `pg_try_advisory_lock` on [`STANDBY_LOCK_KEY`].
///
/// Session-scoped: Postgres releases it when the session ends, whatever the reason (coordinator
/// crash, kill -9, network partition noticed by the server), which is what lets a standby take
/// over without a lease of its own. The flip side is that the lock lives exactly as long as this
/// connection: the holder owns the `Client` here and must keep it (and its connection task)
/// alive, must not hand it to a pool that may close or reuse it, and must step down when
/// [`StandbyLock::is_held`] fails, since a dropped connection means a standby may already be
/// active.
pub struct StandbyLock {
    client: Client,
}

impl StandbyLock {
    /// Takes the lock on a dedicated connection, without waiting.
    pub async fn try_acquire(client: Client) -> Result<TryLock, ClusterError> {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&STANDBY_LOCK_KEY])
            .await?;
        Ok(if row.get::<_, bool>(0) {
            TryLock::Acquired(StandbyLock { client })
        } else {
            TryLock::Busy(client)
        })
    }

    /// Whether this session still holds the lock; an error means the connection is gone, and so
    /// is the lock.
    pub async fn is_held(&self) -> Result<bool, ClusterError> {
        // A bigint advisory key shows in pg_locks as classid = high 32 bits, objid = low 32 bits,
        // objsubid = 1.
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
                 AND classid::bigint = ($1::bigint >> 32) \
                 AND objid::bigint = ($1::bigint & 4294967295))",
                &[&STANDBY_LOCK_KEY],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Hands the lock over now rather than when the connection closes. Returns the connection.
    pub async fn release(self) -> Result<Client, ClusterError> {
        self.client
            .query_one("SELECT pg_advisory_unlock($1)", &[&STANDBY_LOCK_KEY])
            .await?;
        Ok(self.client)
    }
}

#[cfg(test)]
mod tests;
