//! The simulator on a thread and actix system of its own, for a process that hosts it beside
//! other work (the demo, tests, benchmarks): Salesforce is a system of its own, and its workload's
//! transactions must commit on time however busy the host keeps its own runtime.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::store::Org;
use crate::{SimConfig, SimInfo};

pub struct SimThread {
    pub info: SimInfo,
    /// `host:port` of the simulator's Pub/Sub API (TLS, signed by `info.ca_cert`).
    pub pubsub_endpoint: String,
    /// The simulated org, for creating and reading records directly (`begin`/`create`/`commit`).
    pub org: Arc<Org>,
    stop: Option<oneshot::Sender<()>>,
    /// Fires when the simulator has stopped. Awaited rather than joining the thread: a join in
    /// `spawn_blocking` would hold the host runtime's shutdown should the simulator hang, e.g.
    /// after its listener shut itself down on SIGINT with transactions open.
    stopped: Option<oneshot::Receiver<()>>,
}

impl SimThread {
    /// Starts the simulator and returns once it listens; the error says why it could not start.
    pub async fn start(config: SimConfig) -> Result<SimThread, String> {
        let (info_tx, info_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sfsim".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    match crate::start(config).await {
                        Ok(sim) => {
                            let _ = info_tx.send(Ok((
                                sim.info.clone(),
                                sim.pubsub_endpoint.clone(),
                                sim.state.org.clone(),
                            )));
                            let _ = stop_rx.await;
                            sim.stop().await;
                            let _ = stopped_tx.send(());
                        }
                        Err(e) => {
                            let _ = info_tx.send(Err(format!("{e:#}")));
                        }
                    }
                });
            })
            .map_err(|e| format!("simulator thread: {e}"))?;
        let (info, pubsub_endpoint, org) = info_rx
            .await
            .map_err(|_| "the simulator thread ended".to_owned())??;
        Ok(SimThread {
            info,
            pubsub_endpoint,
            org,
            stop: Some(stop_tx),
            stopped: Some(stopped_rx),
        })
    }

    /// Stops the simulator (open transactions are rolled back) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        // Dropped without `stop`: the thread stops on its own; nobody waits for it.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
