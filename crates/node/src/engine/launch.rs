//! Starting one mapping: its table, its claim on the bookkeeping, and its poller.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use driftless_core::state::{MappingKey, MappingState};
use tokio::sync::watch;

use super::{ConnRt, MappingRt, Shared};
use crate::db_writer::{Claim, EnsureSchema, SetState};
use crate::error::Result;
use crate::mapping_ctx::MappingCtx;
use crate::mapping_poller::MappingPoller;
use crate::run::Validated;
use crate::sf;
use crate::status::{states, MappingStatus};

/// Creates or extends the mapping's table, claims the mapping with the next owner epoch (which
/// fences any earlier owner still writing), and starts its poller unless the connection is
/// paused or the mapping was left paused by an earlier process.
pub(crate) async fn start_mapping(shared: &Shared, c: &ConnRt, v: Validated) -> Result<MappingRt> {
    let changes = c
        .writer
        .send(EnsureSchema {
            schema: c.conn.schema.clone(),
            mapping: v.mapping.clone(),
            describe: v.describe.clone(),
        })
        .await??;
    for (col, have, want) in &changes.type_mismatches {
        tracing::warn!(object = %v.mapping.object_name, column = %col, have = %have, want = %want, "column type differs from the describe; left as is");
    }
    let key = MappingKey::new(&c.conn.schema, &c.conn.name, &v.mapping.object_name);
    let state = claim(shared, c, &key).await?;
    let paused = c.paused || state.state == states::PAUSED;
    shared.registry.insert(MappingStatus {
        connection: c.conn.name.clone(),
        object: v.mapping.object_name.clone(),
        state: if paused {
            states::PAUSED.to_owned()
        } else {
            state.state.clone()
        },
        worker: shared.options.worker.clone(),
        rows: 0,
        synced_through: state.synced_through,
        counters: state.counters.clone(),
        last_error: state.last_error.clone(),
        last_error_at: None,
    });
    let needs_resync = state.initial_load_done
        && (!changes.added_fields.is_empty() || state.state == states::RESYNC);
    let mut rt = MappingRt {
        mapping: v.mapping,
        resolved: Arc::new(changes.mapping),
        key,
        epoch: state.owner_epoch,
        pending_resync: needs_resync,
        running: None,
    };
    if paused {
        if state.state != states::PAUSED {
            persist_paused(c, &rt).await?;
        }
        return Ok(rt);
    }
    launch(shared, c, &mut rt, &state);
    Ok(rt)
}

/// Claims the mapping for this process with the next owner epoch.
pub(crate) async fn claim(shared: &Shared, c: &ConnRt, key: &MappingKey) -> Result<MappingState> {
    c.writer
        .send(Claim {
            key: key.clone(),
            owner: shared.options.worker.clone(),
            epoch: shared
                .options
                .assigned_epochs
                .get(&(key.connection.clone(), key.object.clone()))
                .copied(),
        })
        .await?
}

pub(crate) async fn persist_paused(c: &ConnRt, rt: &MappingRt) -> Result<()> {
    c.writer
        .send(SetState {
            key: rt.key.clone(),
            epoch: rt.epoch,
            state: states::PAUSED.to_owned(),
            error: None,
        })
        .await?
}

/// Starts the poller from the committed state `state` (claimed with `rt.epoch`).
pub(crate) fn launch(shared: &Shared, c: &ConnRt, rt: &mut MappingRt, state: &MappingState) {
    let synced_through: Option<DateTime<Utc>> = state
        .initial_load_done
        .then_some(state.synced_through)
        .flatten();
    let (stop_tx, stop_rx) = watch::channel(false);
    let client = match sf::client(&c.conn) {
        Ok(client) => client,
        Err(e) => {
            // The same settings built a client at startup, so this cannot happen short of a
            // bug; show it rather than leave the mapping silently idle.
            tracing::error!(object = %rt.mapping.object_name, error = %e, "cannot build a salesforce client");
            shared
                .registry
                .update(&rt.key.connection, &rt.key.object, |s| {
                    s.state = states::SYSTEM_ERROR.to_owned();
                    s.last_error = Some(e.to_string());
                    s.last_error_at = Some(Utc::now());
                });
            return;
        }
    };
    let ctx = Arc::new(MappingCtx::new(
        rt.key.clone(),
        rt.epoch,
        rt.resolved.clone(),
        client,
        c.writer.clone(),
        shared.registry.clone(),
        c.conn.sync.clone(),
        rt.mapping
            .config
            .sf_polling_seconds
            .unwrap_or(c.conn.sync.poll_interval_secs),
        rt.mapping.config.sf_max_daily_api_calls,
        shared.options.clone(),
        stop_rx,
    ));
    let poller = MappingPoller::new(
        ctx,
        c.secondary.clone(),
        synced_through,
        state.state.clone(),
        std::mem::take(&mut rt.pending_resync),
    );
    let finished = poller.finished();
    poller.start();
    rt.running = Some((stop_tx, finished));
}
