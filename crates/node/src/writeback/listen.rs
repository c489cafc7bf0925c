//! The LISTEN session that wakes the writer when a trigger logs a change.
//!
//! Budget: deadpool's pooled clients drop notifications (their connection task discards them), so
//! LISTEN needs a session of its own. It is taken *out of* `db_pool_size`: while the listener
//! lives, the DbWriter's pool is shrunk by one, and grown back when it ends. With `db_pool_size =
//! 1` there is no slot to spare, so the writer polls on its timer only.

use std::sync::Arc;

use deadpool_postgres::Pool;
use driftless_core::config::ConnectionConfig;
use driftless_core::writeback::NOTIFY_CHANNEL;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db_writer::application_name;
use crate::error::{NodeError, Result};

/// A live LISTEN session; dropping it closes the session and gives the slot back to the pool.
pub struct Listener {
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    pool: Pool,
    /// Set when the session ended (server restart, network): the writer opens a new one.
    pub closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        let max = self.pool.status().max_size;
        self.pool.resize(max + 1);
    }
}

/// Opens the LISTEN session, or `None` when the pool has no slot to spare.
pub async fn open(
    conn: &ConnectionConfig,
    pool: &Pool,
    wake: Arc<Notify>,
) -> Result<Option<Listener>> {
    let max = pool.status().max_size;
    if max <= 1 {
        return Ok(None);
    }
    let mut pg: tokio_postgres::Config =
        conn.database_url.expose().parse().map_err(|_| {
            NodeError::Config(format!("connection {}: bad database_url", conn.name))
        })?;
    // The same name as the pool's sessions, so whoever counts the connection's sessions counts
    // this one too.
    pg.application_name(application_name(&conn.name, "sync"));
    // Shrink first, then wait until the pool really holds no more than the new size: deadpool
    // cannot close a session that is checked out, it drops the excess one when it comes back.
    // Only then is the listener's session inside the budget (the pool and the listener never
    // hold more than db_pool_size together).
    pool.resize(max - 1);
    while pool.status().size > max - 1 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let restore = |pool: &Pool| pool.resize(pool.status().max_size + 1);
    let (client, mut connection) = match pg.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => {
            restore(pool);
            return Err(e.into());
        }
    };
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = closed.clone();
    let task = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        // Whatever was notified while the session was down, a poll finds it.
        wake.notify_one();
    });
    let listener = Listener {
        _client: client,
        task,
        pool: pool.clone(),
        closed,
    };
    listener
        ._client
        .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await?;
    Ok(Some(listener))
}
