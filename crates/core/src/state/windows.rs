//! Window progress: closing primary windows, scheduling and closing their secondary polls.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::{
    fence, fenced_unless, load, table, MappingKey, PrimaryCommit, ReadKind, SecondaryCommit,
    StateError, WindowRecord, MAPPING_STATE_TABLE, TOMBSTONES_TABLE, WINDOWS_TABLE,
};
use crate::window::Window;

/// Closes a primary window: advances `synced_through` to its end, records the window for its
/// secondary poll, adds the counters. Call in the transaction that wrote the window's last rows,
/// after [`fence`]. Fails with `NotContiguous` unless the window starts at `synced_through`, so
/// progress can never jump over an unread range (invariant 1); the first window after the initial
/// load starts at the `done_through` given to [`commit_initial_load`]. Returns the window's id.
pub async fn commit_primary_window(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    commit: &PrimaryCommit,
) -> Result<i64, StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET synced_through = $5, primary_polls = primary_polls + 1, \
         primary_records = primary_records + $6, primary_bulk_jobs = primary_bulk_jobs + $7, \
         primary_bulk_batches = primary_bulk_batches + $8, \
         primary_rest_queries = primary_rest_queries + $9, api_calls = api_calls + $10, \
         updated_at = now() \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $3 \
         AND synced_through IS NOT DISTINCT FROM $4 RETURNING 1",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let w = commit.window;
    let bulk_batches = commit.batches.len() as i64;
    let row = client
        .query_opt(
            &sql,
            &[
                &connection,
                &object,
                &epoch,
                &w.start,
                &w.end,
                &commit.records,
                &commit.bulk_jobs,
                &bulk_batches,
                &commit.rest_queries,
                &commit.api_calls,
            ],
        )
        .await?;
    if row.is_none() {
        let current = load(client, key).await?;
        return match current {
            Some(s) if s.owner_epoch == epoch => Err(StateError::NotContiguous {
                connection: connection.to_owned(),
                object: object.to_owned(),
                start: w.start,
                synced_through: s.synced_through,
            }),
            _ => Err(StateError::Fenced {
                connection: connection.to_owned(),
                object: object.to_owned(),
                epoch,
            }),
        };
    }
    let sql = format!(
        "INSERT INTO {t} (connection, object_name, window_start, window_end, kind, batches, \
         primary_records, secondary_due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        t = table(schema, WINDOWS_TABLE)
    );
    let batches = serde_json::to_value(&commit.batches).expect("windows serialize");
    let row = client
        .query_one(
            &sql,
            &[
                &connection,
                &object,
                &w.start,
                &w.end,
                &commit.kind.as_str(),
                &batches,
                &commit.records,
                &commit.secondary_due_at,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Windows whose secondary poll is due at `now` and not done, oldest first.
pub async fn due_secondary_windows(
    client: &impl GenericClient,
    key: &MappingKey,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<WindowRecord>, StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "SELECT id, window_start, window_end, kind, batches, primary_records, primary_done_at, \
         secondary_due_at, secondary_done_at, secondary_records, drift_records FROM {t} \
         WHERE connection = $1 AND object_name = $2 AND secondary_done_at IS NULL \
         AND secondary_due_at <= $3 ORDER BY window_start LIMIT $4",
        t = table(schema, WINDOWS_TABLE)
    );
    let rows = client
        .query(&sql, &[&connection, &object, &now, &limit])
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind: String = r.get(3);
            let batches: serde_json::Value = r.get(4);
            WindowRecord {
                id: r.get(0),
                window: Window {
                    start: r.get(1),
                    end: r.get(2),
                },
                kind: ReadKind::parse(&kind),
                batches: serde_json::from_value(batches).unwrap_or_default(),
                primary_records: r.get(5),
                primary_done_at: r.get(6),
                secondary_due_at: r.get(7),
                secondary_done_at: r.get(8),
                secondary_records: r.get(9),
                drift_records: r.get(10),
            }
        })
        .collect())
}

/// Marks a window's secondary poll done and adds its counters, in the transaction that wrote the
/// repaired rows, after [`fence`]. Done twice (a retried commit) is a no-op the second time.
pub async fn commit_secondary_window(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    commit: &SecondaryCommit,
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    // Fence first, so a stale owner learns it is fenced even for a window already done.
    fence(client, key, epoch).await?;
    let sql = format!(
        "UPDATE {t} SET secondary_done_at = now(), secondary_records = $4, drift_records = $5 \
         WHERE id = $3 AND connection = $1 AND object_name = $2 AND secondary_done_at IS NULL \
         RETURNING secondary_done_at",
        t = table(schema, WINDOWS_TABLE)
    );
    let updated = client
        .query_opt(
            &sql,
            &[
                &connection,
                &object,
                &commit.window_id,
                &commit.records,
                &commit.drift_records,
            ],
        )
        .await?;
    if updated.is_none() {
        let exists = format!(
            "SELECT 1 FROM {t} WHERE id = $1",
            t = table(schema, WINDOWS_TABLE)
        );
        return match client.query_opt(&exists, &[&commit.window_id]).await? {
            Some(_) => Ok(()),
            None => Err(StateError::NoSuchWindow {
                connection: connection.to_owned(),
                object: object.to_owned(),
                id: commit.window_id,
            }),
        };
    }
    let sql = format!(
        "UPDATE {t} SET secondary_polls = secondary_polls + 1, \
         secondary_records = secondary_records + $4, drift_records = drift_records + $5, \
         secondary_bulk_jobs = secondary_bulk_jobs + $6, \
         secondary_bulk_batches = secondary_bulk_batches + $7, \
         secondary_rest_queries = secondary_rest_queries + $8, api_calls = api_calls + $9, \
         updated_at = now() \
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
                &commit.records,
                &commit.drift_records,
                &commit.bulk_jobs,
                &commit.bulk_batches,
                &commit.rest_queries,
                &commit.api_calls,
            ],
        )
        .await?;
    fenced_unless(row.is_some(), connection, object, epoch)
}

/// Forgets secondary-done windows that ended before `before`, to bound the table's size.
pub async fn prune_windows(
    client: &impl GenericClient,
    key: &MappingKey,
    before: DateTime<Utc>,
) -> Result<u64, StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "DELETE FROM {t} WHERE connection = $1 AND object_name = $2 \
         AND secondary_done_at IS NOT NULL AND window_end < $3",
        t = table(schema, WINDOWS_TABLE)
    );
    Ok(client
        .execute(&sql, &[&connection, &object, &before])
        .await?)
}

/// Forgets tombstones older than `before` (a SystemModstamp). Keep them at least as long as any
/// window that could still be re-read: the secondary delay plus the longest window, with room.
pub async fn prune_tombstones(
    client: &impl GenericClient,
    key: &MappingKey,
    before: DateTime<Utc>,
) -> Result<u64, StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "DELETE FROM {t} WHERE connection = $1 AND object_name = $2 AND systemmodstamp < $3",
        t = table(schema, TOMBSTONES_TABLE)
    );
    let before = before.naive_utc();
    Ok(client
        .execute(&sql, &[&connection, &object, &before])
        .await?)
}
