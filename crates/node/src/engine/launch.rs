//! Starting one mapping: its table, its claim on the bookkeeping, and its poller.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use driftless_core::state::{MappingKey, MappingState};

use super::{ConnectionRun, EngineState, MappingRun};
use crate::db_writer::{Claim, EnsureSchema, SetState};
use crate::error::Result;
use crate::formula_refresh::FormulaRefresher;
use crate::mapping_ctx::{Claimed, MappingCtx, MappingSettings};
use crate::mapping_poller::{MappingPoller, WindowPollRequest};
use crate::salesforce_client as sf;
use crate::shutdown::Shutdown;
use crate::status::{MappingStatus, SyncState};
use crate::validate::Validated;

/// Creates or extends the mapping's table, claims the mapping with the next owner epoch (which
/// fences any earlier owner still writing), and starts its poller unless the connection is
/// paused or the mapping was left paused by an earlier process.
pub(crate) async fn start_mapping(
    shared: &EngineState,
    c: &ConnectionRun,
    v: Validated,
) -> Result<MappingRun> {
    let changes =
        c.db.send(EnsureSchema {
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
    let stored = SyncState::from_row(&state.state);
    let paused = c.paused || stored == SyncState::Paused;
    shared.registry.insert(MappingStatus {
        connection: c.conn.name.clone(),
        object: v.mapping.object_name.clone(),
        state: if paused { SyncState::Paused } else { stored },
        worker: shared.options.worker.clone(),
        rows: 0,
        synced_through: state.synced_through,
        counters: state.counters.clone(),
        last_error: state.last_error.clone(),
        last_error_at: None,
        notify: crate::status::NotifyCounters {
            enabled: v.mapping.config.sf_notify_enabled,
            ..Default::default()
        },
        formula_notes: v
            .formula
            .fields
            .iter()
            .filter(|f| f.is_unsupported())
            .filter_map(|f| {
                f.timed.as_ref().map(|why| {
                    format!(
                        "{}: refreshed every formula_refresh_secs only ({why})",
                        f.field
                    )
                })
            })
            .collect(),
    });
    let needs_resync = state.initial_load_done
        && (!changes.added_fields.is_empty() || stored == SyncState::Resync);
    let mut rt = MappingRun {
        mapping: v.mapping,
        resolved: Arc::new(changes.mapping),
        key,
        epoch: state.owner_epoch,
        pending_resync: needs_resync,
        formula: Arc::new(v.formula),
        poller: None,
        notify: None,
    };
    if paused {
        if stored != SyncState::Paused {
            persist_paused(c, &rt).await?;
        }
        return Ok(rt);
    }
    launch(shared, c, &mut rt, &state);
    Ok(rt)
}

/// Claims the mapping for this process with the next owner epoch.
pub(crate) async fn claim(
    shared: &EngineState,
    c: &ConnectionRun,
    key: &MappingKey,
) -> Result<MappingState> {
    c.db.send(Claim {
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

pub(crate) async fn persist_paused(c: &ConnectionRun, rt: &MappingRun) -> Result<()> {
    c.db.send(SetState {
        key: rt.key.clone(),
        epoch: rt.epoch,
        state: SyncState::Paused,
        error: None,
    })
    .await?
}

/// Starts the poller from the committed state `state` (claimed with `rt.epoch`).
pub(crate) fn launch(
    shared: &EngineState,
    c: &ConnectionRun,
    rt: &mut MappingRun,
    state: &MappingState,
) {
    let synced_through: Option<DateTime<Utc>> = state
        .initial_load_done
        .then_some(state.synced_through)
        .flatten();
    let client = match sf::client(&c.conn) {
        Ok(client) => client,
        Err(e) => {
            // The same settings built a client at startup, so this cannot happen short of a
            // bug; show it rather than leave the mapping silently idle.
            tracing::error!(object = %rt.mapping.object_name, error = %e, "cannot build a salesforce client");
            shared
                .registry
                .update(&rt.key.connection, &rt.key.object, |s| {
                    s.state = SyncState::SystemError;
                    s.last_error = Some(e.to_string());
                    s.last_error_at = Some(Utc::now());
                });
            return;
        }
    };
    let shutdown = Shutdown::new();
    let ctx = Arc::new(MappingCtx::new(
        Claimed {
            key: rt.key.clone(),
            epoch: rt.epoch,
            mapping: rt.resolved.clone(),
        },
        MappingSettings::resolve(&c.conn.sync, &rt.mapping.config, &shared.options),
        client,
        c.db.clone(),
        shared.registry.clone(),
        shutdown.signal(),
    ));
    let mapped: Vec<(String, driftless_core::ident::Ident)> = c
        .file
        .mappings
        .iter()
        .filter(|m| !m.object_name.eq_ignore_ascii_case(&rt.mapping.object_name))
        .filter_map(|m| {
            let table = driftless_core::ident::Ident::from_sf_name(&m.object_name).ok()?;
            Some((m.object_name.clone(), table))
        })
        .collect();
    let every = std::time::Duration::from_secs(
        rt.mapping
            .config
            .formula_refresh_secs()
            .unwrap_or(c.conn.sync.formula_refresh_secs),
    );
    let formula = FormulaRefresher::new(&rt.formula, &rt.resolved, &c.conn.schema, &mapped, every);
    let mut poller = MappingPoller::new(
        ctx.clone(),
        c.secondary.as_ref().map(|p| p.queue()),
        synced_through,
        SyncState::from_row(&state.state),
        std::mem::take(&mut rt.pending_resync),
    )
    .with_formula_refresh(formula);
    if rt.mapping.config.sf_notify_enabled {
        let requests = Arc::new(WindowPollRequest::default());
        poller = poller.with_requests(requests.clone());
        let notify_objects = c
            .file
            .mappings
            .iter()
            .filter(|m| m.config.sf_notify_enabled)
            .map(|m| m.object_name.clone())
            .collect();
        rt.notify = Some(c.notify.register(ctx, requests, notify_objects));
    }
    rt.poller = Some(poller.spawn(shutdown));
}
