//! Peak Postgres sessions the engine holds (the demo's report and the tests that check
//! `db_pool_size` both read it), sampled from `pg_stat_activity` by the
//! `application_name` every DbWriter sets (`driftless/<connection>/<role>`). The sync's role is
//! the one bounded by `db_pool_size`; verify's single session is a separate, one-off check.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct SessionSampler {
    peak: Arc<AtomicI64>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl SessionSampler {
    /// Samples sessions on `database` named `application_name`, every 50 ms: short enough to
    /// see a pool that fills only for one commit.
    pub fn start(
        client: tokio_postgres::Client,
        database: &str,
        application_name: &str,
    ) -> SessionSampler {
        let peak = Arc::new(AtomicI64::new(0));
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let (p, db, app) = (
            peak.clone(),
            database.to_owned(),
            application_name.to_owned(),
        );
        tokio::spawn(async move {
            loop {
                if let Ok(row) = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
                        &[&db, &app],
                    )
                    .await
                {
                    p.fetch_max(row.get::<_, i64>(0), Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = rx.changed() => break,
                }
            }
        });
        SessionSampler { peak, stop }
    }

    pub fn peak(&self) -> i64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for SessionSampler {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
