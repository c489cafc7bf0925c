//! Pause, resume, reload and stop: what `ctl` asks of running mappings.

use std::collections::BTreeMap;

use driftless_core::ident::QualifiedName;

use super::launch::{claim, launch, persist_paused};
use super::reload::TruncateForReload;
use super::{CmdResult, ConnRt, Pause, Reload, Resume, Shared, StopAll};
use crate::admin::AdminError;
use crate::db_writer::Shutdown;
use crate::status::states;

pub(crate) fn connection<'a>(
    conns: &'a mut BTreeMap<String, ConnRt>,
    name: &str,
) -> CmdResult<&'a mut ConnRt> {
    conns
        .get_mut(name)
        .ok_or_else(|| AdminError::not_found(format!("no connection named {name:?}")))
}

/// Heroku Connect's pause: pollers finish their current step, then stop; the state rows say
/// PAUSED, so a restarted process stays paused. Each mapping is claimed with a new epoch, so a
/// secondary poll still reading when the pause came cannot commit afterwards.
pub(crate) async fn pause(shared: &Shared, msg: Pause) -> CmdResult<Vec<String>> {
    let mut conns = shared.conns.lock().await;
    let c = connection(&mut conns, &msg.connection)?;
    c.paused = true;
    let mut names = Vec::new();
    // Every poller is told first, so the pause takes the longest current step, not their sum.
    c.mappings.values().for_each(|rt| rt.signal_stop());
    let objects: Vec<String> = c.mappings.keys().cloned().collect();
    for object in objects {
        let mut rt = c.mappings.remove(&object).expect("listed above");
        rt.halt().await;
        let result = async {
            let state = claim(shared, c, &rt.key).await?;
            rt.epoch = state.owner_epoch;
            persist_paused(c, &rt).await
        }
        .await;
        c.mappings.insert(object.clone(), rt);
        result.map_err(AdminError::from)?;
        shared.registry.update(&c.conn.name, &object, |s| {
            s.state = states::PAUSED.to_owned();
        });
        names.push(format!("{}/{object}", c.conn.name));
    }
    c.stop_writeback().await;
    tracing::info!(connection = %msg.connection, "connection paused");
    shared.publish(&conns);
    Ok(names)
}

/// Restarts every mapping of a paused connection from its committed progress.
pub(crate) async fn resume(shared: &Shared, msg: Resume) -> CmdResult<Vec<String>> {
    let mut conns = shared.conns.lock().await;
    let c = connection(&mut conns, &msg.connection)?;
    c.paused = false;
    let mut names = Vec::new();
    let objects: Vec<String> = c.mappings.keys().cloned().collect();
    for object in objects {
        let mut rt = c.mappings.remove(&object).expect("listed above");
        let result = if rt.is_running() {
            Ok(())
        } else {
            match claim(shared, c, &rt.key).await {
                Ok(state) => {
                    rt.epoch = state.owner_epoch;
                    let shown = if state.initial_load_done {
                        states::DATA_SYNCED
                    } else {
                        states::INITIAL
                    };
                    shared.registry.update(&c.conn.name, &object, |s| {
                        s.state = shown.to_owned();
                    });
                    launch(shared, c, &mut rt, &state);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        c.mappings.insert(object.clone(), rt);
        result.map_err(AdminError::from)?;
        names.push(format!("{}/{object}", c.conn.name));
    }
    c.restart_writeback(&shared.registry)
        .await
        .map_err(AdminError::from)?;
    tracing::info!(connection = %msg.connection, "connection resumed");
    shared.publish(&conns);
    Ok(names)
}

/// Heroku Connect's "reload table": stop the poller, truncate the table in one fenced
/// transaction that also forgets the mapping's progress, and load it again from scratch.
pub(crate) async fn reload(shared: &Shared, msg: Reload) -> CmdResult<String> {
    let mut conns = shared.conns.lock().await;
    let c = connection(&mut conns, &msg.connection)?;
    if c.paused {
        return Err(AdminError::failed_precondition(format!(
            "connection {} is paused; resume it before reloading",
            c.conn.name
        )));
    }
    let object = c
        .mappings
        .keys()
        .find(|o| o.eq_ignore_ascii_case(&msg.object))
        .cloned()
        .ok_or_else(|| {
            AdminError::not_found(format!(
                "connection {} has no mapping of {:?}",
                c.conn.name, msg.object
            ))
        })?;
    let mut rt = c.mappings.remove(&object).expect("found above");
    rt.halt().await;
    let result = async {
        // A new epoch first: whatever the old poller's secondary polls still hold is fenced out
        // before the table is emptied, so nothing of the old load lands in the new one.
        let claimed = claim(shared, c, &rt.key).await?;
        rt.epoch = claimed.owner_epoch;
        c.writer
            .send(TruncateForReload {
                key: rt.key.clone(),
                epoch: rt.epoch,
                table: QualifiedName::new(&c.conn.schema, &rt.resolved.table),
            })
            .await??;
        // What the truncating transaction left in the state row.
        let mut state = claimed;
        state.state = states::RELOAD_TABLE.to_owned();
        state.synced_through = None;
        state.initial_load_done = false;
        state.initial_load_cursor = None;
        Ok::<_, crate::NodeError>(state)
    }
    .await;
    let state = match result {
        Ok(state) => state,
        Err(e) => {
            // Whatever failed, polling goes on from what is committed.
            if let Ok(state) = claim(shared, c, &rt.key).await {
                rt.epoch = state.owner_epoch;
                launch(shared, c, &mut rt, &state);
            }
            c.mappings.insert(object, rt);
            shared.publish(&conns);
            return Err(e.into());
        }
    };
    rt.epoch = state.owner_epoch;
    shared.registry.update(&c.conn.name, &object, |s| {
        s.state = states::RELOAD_TABLE.to_owned();
        s.rows = 0;
        s.synced_through = None;
    });
    launch(shared, c, &mut rt, &state);
    c.mappings.insert(object.clone(), rt);
    tracing::info!(connection = %msg.connection, object, "table reload started");
    shared.publish(&conns);
    Ok(states::RELOAD_TABLE.to_owned())
}

pub(crate) async fn stop_all(shared: &Shared, _: StopAll) {
    let mut conns = shared.conns.lock().await;
    for rt in conns.values().flat_map(|c| c.mappings.values()) {
        rt.signal_stop();
    }
    for c in conns.values_mut() {
        c.stop_writeback().await;
        for rt in c.mappings.values_mut() {
            rt.halt().await;
        }
        let _ = c.writer.send(Shutdown).await;
    }
}
