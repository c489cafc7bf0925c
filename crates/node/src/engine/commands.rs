//! Pause, resume, reload and stop: what `ctl` asks of running mappings.

use std::collections::BTreeMap;

use super::launch::{claim, launch, persist_paused};
use super::{CmdResult, CommandError, ConnectionRun, EngineState, Pause, Reload, Resume, StopAll};
use crate::db_writer::{Close, TruncateForReload};
use crate::status::SyncState;

pub(crate) fn connection<'a>(
    conns: &'a mut BTreeMap<String, ConnectionRun>,
    name: &str,
) -> CmdResult<&'a mut ConnectionRun> {
    conns
        .get_mut(name)
        .ok_or_else(|| CommandError::NotFound(format!("no connection named {name:?}")))
}

/// Heroku Connect's pause: pollers finish their current step, then stop; the state rows say
/// PAUSED, so a restarted process stays paused. Each mapping is claimed with a new epoch, so a
/// secondary poll still reading when the pause came cannot commit afterwards.
pub(crate) async fn pause(shared: &EngineState, msg: Pause) -> CmdResult<Vec<String>> {
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
        result?;
        shared.registry.update(&c.conn.name, &object, |s| {
            s.state = SyncState::Paused;
        });
        names.push(format!("{}/{object}", c.conn.name));
    }
    c.stop_writeback().await;
    tracing::info!(connection = %msg.connection, "connection paused");
    shared.publish(&conns);
    Ok(names)
}

/// Restarts every mapping of a paused connection from its committed progress.
pub(crate) async fn resume(shared: &EngineState, msg: Resume) -> CmdResult<Vec<String>> {
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
                        SyncState::DataSynced
                    } else {
                        SyncState::Initial
                    };
                    shared.registry.update(&c.conn.name, &object, |s| {
                        s.state = shown;
                    });
                    launch(shared, c, &mut rt, &state);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        c.mappings.insert(object.clone(), rt);
        result?;
        names.push(format!("{}/{object}", c.conn.name));
    }
    c.restart_writeback(&shared.registry)
        .await
        .map_err(CommandError::from)?;
    tracing::info!(connection = %msg.connection, "connection resumed");
    shared.publish(&conns);
    Ok(names)
}

/// Heroku Connect's "reload table": stop the poller, truncate the table in one fenced
/// transaction that also forgets the mapping's progress, and load it again from scratch.
pub(crate) async fn reload(shared: &EngineState, msg: Reload) -> CmdResult<String> {
    let mut conns = shared.conns.lock().await;
    let c = connection(&mut conns, &msg.connection)?;
    if c.paused {
        return Err(CommandError::NotNow(format!(
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
            CommandError::NotFound(format!(
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
        c.db.send(TruncateForReload {
            key: rt.key.clone(),
            epoch: rt.epoch,
            mapping: rt.resolved.clone(),
        })
        .await??;
        // What the truncating transaction left in the state row.
        let mut state = claimed;
        state.state = SyncState::ReloadTable.as_str().to_owned();
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
        s.state = SyncState::ReloadTable;
        s.rows = 0;
        s.synced_through = None;
    });
    launch(shared, c, &mut rt, &state);
    c.mappings.insert(object.clone(), rt);
    tracing::info!(connection = %msg.connection, object, "table reload started");
    shared.publish(&conns);
    Ok(SyncState::ReloadTable.as_str().to_owned())
}

pub(crate) async fn stop_all(shared: &EngineState, _: StopAll) {
    let mut conns = shared.conns.lock().await;
    for rt in conns.values().flat_map(|c| c.mappings.values()) {
        rt.signal_stop();
    }
    for c in conns.values_mut() {
        c.notify.stop().await;
        c.stop_writeback().await;
        for rt in c.mappings.values_mut() {
            rt.halt().await;
        }
        if let Some(pool) = c.secondary.take() {
            pool.stop().await;
        }
        let _ = c.db.send(Close).await;
    }
}
