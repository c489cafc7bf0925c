//! The simulated org, on a thread and actix system of its own: Salesforce is a system of its own,
//! and its workload's transactions must commit on time however busy the engine keeps the demo's
//! runtime.

use super::DemoError;

pub struct Sim {
    pub info: sfsim::SimInfo,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Fires when the simulator has stopped. Waited on rather than joining the thread: a join in
    /// `spawn_blocking` would hold the runtime's shutdown (and the process) should the simulator
    /// hang, e.g. after its listener shut itself down on SIGINT with transactions open.
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Sim {
    pub async fn start(dataset: Vec<(String, u64)>) -> Result<Sim, DemoError> {
        let (info_tx, info_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let config = sfsim::SimConfig {
            dataset,
            ..Default::default()
        };
        std::thread::Builder::new()
            .name("sfsim".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    match sfsim::start(config).await {
                        Ok(sim) => {
                            let _ = info_tx.send(Ok(sim.info.clone()));
                            let _ = stop_rx.await;
                            sim.stop().await;
                            let _ = stopped_tx.send(());
                        }
                        Err(e) => {
                            let _ = info_tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .map_err(|e| DemoError::Setup(format!("simulator thread: {e}")))?;
        let info = info_rx
            .await
            .map_err(|_| DemoError::Setup("the simulator thread ended".into()))?
            .map_err(|e| DemoError::Setup(format!("simulator: {e}")))?;
        Ok(Sim {
            info,
            stop: Some(stop_tx),
            stopped: Some(stopped_rx),
        })
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, DemoError> {
        let mut req =
            reqwest::Client::new().request(method, format!("{}{path}", self.info.instance_url));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| DemoError::Setup(format!("simulator {path}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(DemoError::Setup(format!(
                "simulator {path}: {status} {text}"
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    pub async fn start_workload(&self, spec: &serde_json::Value) -> Result<(), DemoError> {
        self.control(reqwest::Method::POST, "/_sim/workload", Some(spec))
            .await
            .map(drop)
    }

    /// Returns once no transaction is left open.
    pub async fn stop_workload(&self) -> Result<(), DemoError> {
        self.control(reqwest::Method::DELETE, "/_sim/workload", None)
            .await
            .map(drop)
    }

    /// `GET /_sim/workload`: operations done and long transactions opened.
    pub async fn workload_counts(&self) -> Result<serde_json::Value, DemoError> {
        self.control(reqwest::Method::GET, "/_sim/workload", None)
            .await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}
