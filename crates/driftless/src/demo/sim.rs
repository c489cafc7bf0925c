//! The simulated org (on a thread and actix system of its own, `sfsim::thread`) and the control
//! plane calls the demo makes.

use sfsim::thread::SimThread;

use super::DemoError;

pub struct Sim {
    thread: SimThread,
    pub info: sfsim::SimInfo,
}

impl Sim {
    pub async fn start(dataset: Vec<(String, u64)>) -> Result<Sim, DemoError> {
        let config = sfsim::SimConfig {
            dataset,
            ..Default::default()
        };
        let thread = SimThread::start(config)
            .await
            .map_err(|e| DemoError::Setup(format!("simulator: {e}")))?;
        Ok(Sim {
            info: thread.info.clone(),
            thread,
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

    pub async fn stop(self) {
        self.thread.stop().await;
    }
}
