//! Driftless's bookkeeping in the connection's schema: `_driftless_mapping_state` and
//! `_driftless_windows` (SPEC.md §5), and the statements that keep DESIGN.md invariants 1 and 2.
//!
//! The bookkeeping lives in the *target* database, next to the rows, so that a window's progress
//! commits in the same transaction as the rows it covers, and the owner-epoch check is part of that
//! same transaction. The pattern for every data-path commit is:
//!
//! ```text
//! BEGIN
//!   fence(tx, epoch)            -- row-locks the mapping's state row; fails if the epoch moved on
//!   ... upsert/delete rows ...
//!   commit_primary_window(...)  -- or commit_secondary_window / set_initial_load_cursor
//! COMMIT
//! ```
//!
//! `fence` is an `UPDATE ... WHERE owner_epoch = $epoch`, so it holds the row lock until COMMIT. A
//! new owner's [`claim`] updates the same row, so it waits for an in-flight commit of the old owner
//! to finish and then sees its progress; after the claim every old-owner commit fails its fence.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::ident::{Ident, QualifiedName};
use crate::window::Window;

pub mod rejects;
pub mod table_identity;
mod windows;

pub use windows::{
    commit_primary_window, commit_secondary_window, due_secondary_windows, prune_tombstones,
    prune_windows,
};

/// Which mapping's bookkeeping a statement is about: the schema it lives in and its key there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MappingKey {
    pub schema: Ident,
    pub connection: String,
    /// Salesforce object API name as the mapping spells it.
    pub object: String,
}

impl MappingKey {
    pub fn new(schema: &Ident, connection: &str, object: &str) -> MappingKey {
        MappingKey {
            schema: schema.clone(),
            connection: connection.to_owned(),
            object: object.to_owned(),
        }
    }

    fn parts(&self) -> (&Ident, &str, &str) {
        (&self.schema, &self.connection, &self.object)
    }
}

pub const MAPPING_STATE_TABLE: &str = "_driftless_mapping_state";
pub const WINDOWS_TABLE: &str = "_driftless_windows";
/// Deleted records' last SystemModstamp, so a stale read cannot bring them back (invariant 3); see
/// [`crate::dml`].
pub const TOMBSTONES_TABLE: &str = "_driftless_tombstones";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another worker owns the mapping now: roll back and stop (DESIGN.md invariant 2).
    #[error("{connection}/{object}: owner epoch {epoch} is stale, the mapping has a newer owner")]
    Fenced {
        connection: String,
        object: String,
        epoch: i64,
    },
    /// The window does not start at the committed high-water mark: committing it would leave a gap.
    #[error(
        "{connection}/{object}: window starts at {start} but progress is committed through {synced_through:?}"
    )]
    NotContiguous {
        connection: String,
        object: String,
        start: DateTime<Utc>,
        synced_through: Option<DateTime<Utc>>,
    },
    #[error("{connection}/{object}: no such window {id}")]
    NoSuchWindow {
        connection: String,
        object: String,
        id: i64,
    },
    #[error("bookkeeping query failed: {}", crate::pgerror::describe(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// Primary or secondary read kind of a window, as stored in `_driftless_windows.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadKind {
    Rest,
    Bulk,
}

impl ReadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadKind::Rest => "rest",
            ReadKind::Bulk => "bulk",
        }
    }

    fn parse(s: &str) -> ReadKind {
        if s == "bulk" {
            ReadKind::Bulk
        } else {
            ReadKind::Rest
        }
    }
}

/// One row of `_driftless_mapping_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingState {
    pub connection: String,
    pub object_name: String,
    pub owner_epoch: i64,
    pub owner: Option<String>,
    /// Heroku Connect's state names: INITIAL, DATA_SYNCED, POLLING_SF_CHANGES, ...
    pub state: String,
    /// Exclusive end of the last committed primary window: the next window starts here.
    pub synced_through: Option<DateTime<Utc>>,
    pub initial_load_done: bool,
    /// Last sfid committed by the initial load, for keyset resume after a restart.
    pub initial_load_cursor: Option<String>,
    pub counters: Counters,
    pub last_error: Option<String>,
}

/// Cumulative counters shown by `ctl status` (SPEC.md §6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub primary_polls: i64,
    pub primary_records: i64,
    pub primary_bulk_jobs: i64,
    pub primary_bulk_batches: i64,
    pub primary_rest_queries: i64,
    pub secondary_polls: i64,
    pub secondary_records: i64,
    pub drift_records: i64,
    pub secondary_bulk_jobs: i64,
    pub secondary_bulk_batches: i64,
    pub secondary_rest_queries: i64,
    pub api_calls: i64,
    pub errors: i64,
    /// Rows whose formula values a formula refresh changed (`crate::formula`).
    pub formula_refreshed: i64,
}

/// One row of `_driftless_windows`: a closed primary window, awaiting or done with its secondary poll.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRecord {
    pub id: i64,
    pub window: Window,
    pub kind: ReadKind,
    /// Bounds of the primary bulk job's batches; the secondary job re-reads exactly these, one batch
    /// per primary batch (DESIGN.md invariant 5). Empty for REST windows.
    pub batches: Vec<Window>,
    pub primary_records: i64,
    pub primary_done_at: DateTime<Utc>,
    pub secondary_due_at: DateTime<Utc>,
    pub secondary_done_at: Option<DateTime<Utc>>,
    pub secondary_records: i64,
    pub drift_records: i64,
}

/// What a primary poll of one window did, committed with its last rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryCommit {
    pub window: Window,
    pub kind: ReadKind,
    pub batches: Vec<Window>,
    pub records: i64,
    pub bulk_jobs: i64,
    pub rest_queries: i64,
    pub api_calls: i64,
    /// When the secondary poll may re-read the window (`now + secondary_delay_secs`).
    pub secondary_due_at: DateTime<Utc>,
}

/// What a secondary poll of one window did, committed with the rows it repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryCommit {
    pub window_id: i64,
    pub records: i64,
    pub drift_records: i64,
    pub bulk_jobs: i64,
    pub bulk_batches: i64,
    pub rest_queries: i64,
    pub api_calls: i64,
}

pub(crate) fn table(schema: &Ident, name: &str) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal(name))
}

/// DDL of the bookkeeping tables, idempotent.
pub fn create_tables(schema: &Ident) -> Vec<String> {
    let state = table(schema, MAPPING_STATE_TABLE);
    let windows = table(schema, WINDOWS_TABLE);
    let tombstones = table(schema, TOMBSTONES_TABLE);
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {state} (
    connection text NOT NULL,
    object_name text NOT NULL,
    owner_epoch bigint NOT NULL DEFAULT 0,
    owner text,
    state text NOT NULL DEFAULT 'INITIAL',
    synced_through timestamptz,
    initial_load_done boolean NOT NULL DEFAULT false,
    initial_load_cursor varchar(18) COLLATE \"C\",
    primary_polls bigint NOT NULL DEFAULT 0,
    primary_records bigint NOT NULL DEFAULT 0,
    primary_bulk_jobs bigint NOT NULL DEFAULT 0,
    primary_bulk_batches bigint NOT NULL DEFAULT 0,
    primary_rest_queries bigint NOT NULL DEFAULT 0,
    secondary_polls bigint NOT NULL DEFAULT 0,
    secondary_records bigint NOT NULL DEFAULT 0,
    drift_records bigint NOT NULL DEFAULT 0,
    secondary_bulk_jobs bigint NOT NULL DEFAULT 0,
    secondary_bulk_batches bigint NOT NULL DEFAULT 0,
    secondary_rest_queries bigint NOT NULL DEFAULT 0,
    api_calls bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    formula_refreshed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (connection, object_name)
)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {windows} (
    id bigserial PRIMARY KEY,
    connection text NOT NULL,
    object_name text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('rest', 'bulk')),
    batches jsonb NOT NULL DEFAULT '[]',
    primary_records bigint NOT NULL DEFAULT 0,
    primary_done_at timestamptz NOT NULL DEFAULT now(),
    secondary_due_at timestamptz NOT NULL,
    secondary_done_at timestamptz,
    secondary_records bigint NOT NULL DEFAULT 0,
    drift_records bigint NOT NULL DEFAULT 0,
    CHECK (window_start < window_end),
    UNIQUE (connection, object_name, window_start)
)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {tombstones} (
    connection text NOT NULL,
    object_name text NOT NULL,
    sfid varchar(18) COLLATE \"C\" NOT NULL,
    systemmodstamp timestamp NOT NULL,
    PRIMARY KEY (connection, object_name, sfid)
)"
        ),
        table_identity::columns(&state),
        rejects::create_table(schema),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_driftless_windows_secondary_due\" ON {windows} \
             (connection, object_name, secondary_due_at) WHERE secondary_done_at IS NULL"
        ),
        // Added after the first release: ALTER so that existing state tables get them too.
        format!(
            "ALTER TABLE {state} ADD COLUMN IF NOT EXISTS notify_replay_id bytea, \
             ADD COLUMN IF NOT EXISTS notify_replay_at timestamptz"

        ),
        // Added after the first release: an older state table gains it in place. Checked first,
        // because ALTER TABLE locks the table even when the column exists, and mappings starting
        // at once would deadlock on that lock and their claims.
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute \
             WHERE attrelid = '{state}'::regclass AND attname = 'formula_refreshed' AND NOT attisdropped) \
             THEN ALTER TABLE {state} ADD COLUMN formula_refreshed bigint NOT NULL DEFAULT 0; END IF; END $$"
        ),
    ]
}

/// Change-event progress, committed with the rows the events led to: every event of the
/// connection's subscription up to `replay_id` has been acted on for this mapping. Fenced.
pub async fn commit_notify(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    replay_id: &[u8],
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET notify_replay_id = $4, notify_replay_at = clock_timestamp(), \
         updated_at = now() \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $3 RETURNING 1",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let row = client
        .query_opt(&sql, &[&connection, &object, &epoch, &replay_id])
        .await?;
    fenced_unless(row.is_some(), connection, object, epoch)
}

/// Where a connection's subscription resumes: of the stored replay ids of `objects`, the one
/// committed longest ago. Replay ids are opaque, but events are acted on in stream order, so
/// the oldest commit holds the earliest position and resuming there misses nothing for any of
/// them (what the others already merged comes again and changes nothing). `None`: start at
/// the latest event.
pub async fn notify_resume_point(
    client: &impl GenericClient,
    schema: &Ident,
    connection: &str,
    objects: &[String],
) -> Result<Option<Vec<u8>>, StateError> {
    let sql = format!(
        "SELECT notify_replay_id FROM {t} WHERE connection = $1 AND object_name = ANY($2) \
         AND notify_replay_id IS NOT NULL ORDER BY notify_replay_at LIMIT 1",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let row = client.query_opt(&sql, &[&connection, &objects]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Takes ownership of a mapping with `epoch` (handed out by the coordinator, increasing per lease).
/// Creates the state row on first use. Returns false when a newer epoch already owns the mapping.
/// Re-claiming with the current epoch succeeds, so a restarted owner can resume.
pub async fn claim(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    owner: &str,
) -> Result<bool, StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "INSERT INTO {t} AS s (connection, object_name, owner_epoch, owner) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (connection, object_name) DO UPDATE \
         SET owner_epoch = EXCLUDED.owner_epoch, owner = EXCLUDED.owner, updated_at = now() \
         WHERE s.owner_epoch <= EXCLUDED.owner_epoch \
         RETURNING owner_epoch",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let row = client
        .query_opt(&sql, &[&connection, &object, &epoch, &owner])
        .await?;
    Ok(row.is_some())
}

/// The fencing check (DESIGN.md invariant 2). Call first inside every transaction that writes rows
/// or progress; it row-locks the mapping's state until COMMIT/ROLLBACK.
pub async fn fence(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET updated_at = now() \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $3 RETURNING owner_epoch",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    match client
        .query_opt(&sql, &[&connection, &object, &epoch])
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StateError::Fenced {
            connection: connection.to_owned(),
            object: object.to_owned(),
            epoch,
        }),
    }
}

pub async fn load(
    client: &impl GenericClient,
    key: &MappingKey,
) -> Result<Option<MappingState>, StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "SELECT connection, object_name, owner_epoch, owner, state, synced_through, \
         initial_load_done, initial_load_cursor, primary_polls, primary_records, primary_bulk_jobs, \
         primary_bulk_batches, primary_rest_queries, secondary_polls, secondary_records, \
         drift_records, secondary_bulk_jobs, secondary_bulk_batches, secondary_rest_queries, \
         api_calls, errors, last_error, formula_refreshed \
         FROM {t} WHERE connection = $1 AND object_name = $2",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let Some(r) = client.query_opt(&sql, &[&connection, &object]).await? else {
        return Ok(None);
    };
    Ok(Some(MappingState {
        connection: r.get(0),
        object_name: r.get(1),
        owner_epoch: r.get(2),
        owner: r.get(3),
        state: r.get(4),
        synced_through: r.get(5),
        initial_load_done: r.get(6),
        initial_load_cursor: r.get(7),
        counters: Counters {
            primary_polls: r.get(8),
            primary_records: r.get(9),
            primary_bulk_jobs: r.get(10),
            primary_bulk_batches: r.get(11),
            primary_rest_queries: r.get(12),
            secondary_polls: r.get(13),
            secondary_records: r.get(14),
            drift_records: r.get(15),
            secondary_bulk_jobs: r.get(16),
            secondary_bulk_batches: r.get(17),
            secondary_rest_queries: r.get(18),
            api_calls: r.get(19),
            errors: r.get(20),
            formula_refreshed: r.get(22),
        },
        last_error: r.get(21),
    }))
}

/// Adds a formula refresh's changed rows and API calls to the mapping's counters. Fenced by the
/// caller's transaction.
pub async fn commit_formula_refresh(
    client: &impl GenericClient,
    key: &MappingKey,
    refreshed: i64,
    api_calls: i64,
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET formula_refreshed = formula_refreshed + $3, api_calls = api_calls + $4, \
         updated_at = now() WHERE connection = $1 AND object_name = $2",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    client
        .execute(&sql, &[&connection, &object, &refreshed, &api_calls])
        .await?;
    Ok(())
}

/// Sets the Heroku Connect-style state (and the last error, cleared with `None`). Fenced.
pub async fn set_state(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    state: &str,
    last_error: Option<&str>,
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET state = $4, last_error = $5, \
         errors = errors + CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END, updated_at = now() \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $3 RETURNING 1",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let row = client
        .query_opt(&sql, &[&connection, &object, &epoch, &state, &last_error])
        .await?;
    fenced_unless(row.is_some(), connection, object, epoch)
}

/// Initial load progress, committed with a page of rows: the last sfid written, so a restart resumes
/// the keyset scan after it. `done_through` = Some(T0) when the load finished: the load read every
/// record with SystemModstamp < T0, so windows start at T0 (floored to a whole second: re-reading
/// part of a second is harmless, skipping one is not).
pub async fn commit_initial_load(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    cursor: Option<&str>,
    records: i64,
    done_through: Option<DateTime<Utc>>,
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    let done_through = done_through.map(crate::window::floor_second);
    let sql = format!(
        "UPDATE {t} SET initial_load_cursor = COALESCE($4, initial_load_cursor), \
         primary_records = primary_records + $5, \
         initial_load_done = initial_load_done OR $6::timestamptz IS NOT NULL, \
         synced_through = COALESCE($6, synced_through), updated_at = now() \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $3 RETURNING 1",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let row = client
        .query_opt(
            &sql,
            &[
                &connection,
                &object,
                &epoch,
                &cursor,
                &records,
                &done_through,
            ],
        )
        .await?;
    fenced_unless(row.is_some(), connection, object, epoch)
}

/// Starts or resumes an initial load. The first attempt records `mark` (every record stamped
/// before it was visible when the load began) in `synced_through`, which stays unused until
/// `initial_load_done`; a resumed load keeps the first attempt's mark, since records it already
/// committed may have changed since then, and gets back the committed cursor. Fenced.
pub async fn begin_initial_load(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    mark: DateTime<Utc>,
) -> Result<(DateTime<Utc>, Option<String>), StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET synced_through = COALESCE(synced_through, $4), updated_at = now() \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $3 AND NOT initial_load_done \
         RETURNING synced_through, initial_load_cursor",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let mark = crate::window::floor_second(mark);
    let row = client
        .query_opt(&sql, &[&connection, &object, &epoch, &mark])
        .await?;
    match row {
        Some(r) => Ok((r.get(0), r.get(1))),
        None => Err(StateError::Fenced {
            connection: connection.to_owned(),
            object: object.to_owned(),
            epoch,
        }),
    }
}

/// A reload (`ctl reload`) starts over: back to INITIAL, no progress, windows forgotten. The caller
/// truncates the table in the same transaction. Fenced.
pub async fn reset_for_reload(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET state = 'RELOAD_TABLE', synced_through = NULL, initial_load_done = false, \
         initial_load_cursor = NULL, table_oid = NULL, table_filenode = NULL, table_rows = NULL, \
         updated_at = now() \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $3 RETURNING 1",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let row = client
        .query_opt(&sql, &[&connection, &object, &epoch])
        .await?;
    fenced_unless(row.is_some(), connection, object, epoch)?;
    let sql = format!(
        "DELETE FROM {w} WHERE connection = $1 AND object_name = $2",
        w = table(schema, WINDOWS_TABLE)
    );
    client.execute(&sql, &[&connection, &object]).await?;
    Ok(())
}

fn fenced_unless(ok: bool, connection: &str, object: &str, epoch: i64) -> Result<(), StateError> {
    if ok {
        Ok(())
    } else {
        Err(StateError::Fenced {
            connection: connection.to_owned(),
            object: object.to_owned(),
            epoch,
        })
    }
}
