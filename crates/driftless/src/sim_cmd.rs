//! `driftless sim`: serve a simulated org until interrupted.

use crate::UsageError;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Records to generate, e.g. `Account=100000,Contact=300000`
    #[arg(long, default_value = "")]
    dataset: String,
    /// Seed for the dataset: the same seed always gives the same records
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Serve HTTPS, with a generated certificate unless --tls-cert/--tls-key are given
    #[arg(long)]
    tls: bool,
    /// PEM certificate (chain) to serve instead of a generated one
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra DNS name or IP for the generated certificate (repeatable)
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Daily API request allowance; calls past it fail with REQUEST_LIMIT_EXCEEDED
    #[arg(long)]
    api_quota: Option<u64>,
    /// Access tokens expire this many seconds after login
    #[arg(long)]
    session_ttl: Option<u64>,
    /// Bulk processing speed; batches stay InProgress for rows / this many seconds
    #[arg(long)]
    bulk_rows_per_sec: Option<u64>,
    /// The URL to announce as login and instance URL when clients reach the simulator by
    /// another name than --listen (e.g. `http://sim:8443` in a container network)
    #[arg(long)]
    public_url: Option<String>,
    /// Address of the Pub/Sub API (gRPC, always TLS); port 0 picks a free port
    #[arg(long, default_value = "127.0.0.1:0")]
    pubsub_listen: String,
    /// How long change events are retained for replay
    #[arg(long, default_value_t = sfsim::cdc::DEFAULT_RETENTION_SECS)]
    cdc_retention_secs: u64,
    /// Describe JSON of objects to add (the body of `GET .../sobjects/OBJECT/describe`, or
    /// `{"sobjects":[...]}` of several); repeatable
    #[arg(long = "objects")]
    objects: Vec<PathBuf>,
    /// An object without Change Data Capture (no change-event topic, no events), as Salesforce
    /// objects outside CDC's supported or selected entities; repeatable
    #[arg(long = "no-cdc", value_name = "OBJECT")]
    no_cdc: Vec<String>,
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let dataset = sfsim::config::parse_dataset(&args.dataset)
        .map_err(|e| UsageError(format!("--dataset: {e}")))?;
    let config = sfsim::SimConfig {
        listen: args.listen,
        dataset,
        seed: args.seed,
        tls: args.tls || args.tls_cert.is_some(),
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_sans: args.tls_san,
        api_quota: args.api_quota,
        session_ttl_secs: args.session_ttl,
        bulk_rows_per_sec: args.bulk_rows_per_sec,
        cert_dir: None,
        public_url: args.public_url,
        pubsub_listen: args.pubsub_listen,
        cdc_retention_secs: args.cdc_retention_secs,
        objects: args.objects,
        no_cdc: args.no_cdc,
        ..Default::default()
    };
    let schema = sfsim::schema::Schema::with_object_files(&config.objects).map_err(UsageError)?;
    if let Some(object) = config
        .dataset
        .iter()
        .find(|(o, _)| schema.object(o).is_none())
    {
        return Err(UsageError(format!("--dataset: unknown object '{}'", object.0)).into());
    }
    if let Some(object) = config.no_cdc.iter().find(|o| schema.object(o).is_none()) {
        return Err(UsageError(format!("--no-cdc: unknown object '{object}'")).into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sim = sfsim::start(config).await?;
        let line = serde_json::to_string(&sim.ready_line())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        drop(out);
        tracing::info!(url = %sim.info.instance_url, "simulator ready");
        shutdown_signal().await;
        tracing::info!("stopping simulator");
        sim.stop().await;
        Ok(())
    })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
