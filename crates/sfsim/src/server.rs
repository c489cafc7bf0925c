//! Starting and stopping a simulator: the org, its dataset, the HTTP(S) listener and the
//! Pub/Sub (gRPC, TLS) listener.

use crate::config::{SimConfig, SimInfo, CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME};
use crate::faults::Faults;
use crate::http::{api_guard, AppState};
use crate::schema::Schema;
use crate::sessions::Sessions;
use crate::store::Org;
use crate::{bulk_v1, bulk_v2, control, dataset, login, rest, stats::Stats, workload};
use actix_web::{middleware::from_fn, web, App};
use anyhow::Context;
use parking_lot::RwLock;

/// A simulator serving in the background of the current tokio runtime.
pub struct RunningSim {
    pub info: SimInfo,
    pub state: web::Data<AppState>,
    /// `host:port` of the Pub/Sub API (gRPC over TLS, trusting `info.ca_cert`).
    pub pubsub_endpoint: String,
    handle: actix_web::dev::ServerHandle,
    pubsub: crate::pubsub::PubSubServer,
}

impl RunningSim {
    /// Stops the workload and the listeners; open transactions commit first.
    pub async fn stop(self) {
        self.state.workload.stop_all(&self.state.org).await;
        self.handle.stop(true).await;
        self.pubsub.stop().await;
    }

    /// The JSON line `driftless sim` prints when ready (SPEC.md section 2).
    pub fn ready_line(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.info).expect("SimInfo serialises");
        v["pubsub_endpoint"] = serde_json::Value::String(self.pubsub_endpoint.clone());
        v
    }

    pub fn base_url(&self) -> &str {
        &self.info.instance_url
    }
}

/// Time-dependent formulas change at midnight of the formula clock; this notices it. The task
/// ends with the org.
fn spawn_formula_day_check(org: &std::sync::Arc<Org>) {
    let org = std::sync::Arc::downgrade(org);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(org) = org.upgrade() else { return };
            if let Err(e) =
                tokio::task::spawn_blocking(move || org.refresh_formulas_if_day_changed()).await
            {
                tracing::warn!("formula day check: {e}");
            }
        }
    });
}

/// Builds the org (with its dataset), binds the listener and starts serving.
pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
    let org = Org::new(Schema::with_object_files(&config.objects).map_err(anyhow::Error::msg)?);
    {
        let org = org.clone();
        let (spec, seed) = (config.dataset.clone(), config.seed);
        tokio::task::spawn_blocking(move || dataset::generate_all(&org, &spec, seed))
            .await
            .context("dataset generation panicked")?
            .map_err(anyhow::Error::msg)?;
    }
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    // The Pub/Sub endpoint is TLS-only, so the certificate exists even when HTTP is plain.
    let tls_setup = crate::tls::setup(
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &config.tls_sans,
        config.cert_dir.as_deref(),
    )?;
    let (cert_pem, key_pem) = (tls_setup.cert_pem.clone(), tls_setup.key_pem.clone());
    let ca_cert = tls_setup.ca_cert.display().to_string();
    let tls = (config.tls || config.tls_cert.is_some()).then_some(tls_setup);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!("{scheme}://{host}:{}", addr.port()),
    };
    let sessions = Sessions::new(&org.org_id, config.seed);
    let info = SimInfo {
        instance_url: url.clone(),
        login_url: url,
        org_id: org.org_id.clone(),
        username: USERNAME.into(),
        password: PASSWORD.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        refresh_token: sessions.refresh_token.clone(),
        ca_cert: Some(ca_cert),
    };
    spawn_formula_day_check(&org);
    let cdc = crate::cdc::ChangeLog::new(
        &org.schema,
        &config.no_cdc,
        &org.admin_user_id,
        std::time::Duration::from_secs(config.cdc_retention_secs),
    );
    org.set_commit_observer(cdc.clone());
    let state = web::Data::new(AppState {
        org,
        info: info.clone(),
        faults: RwLock::new(Faults::default()),
        stats: Stats::default(),
        sessions,
        rest: rest::RestState::default(),
        bulk_v1: bulk_v1::BulkV1State::default(),
        bulk_v2: bulk_v2::BulkV2State::default(),
        workload: workload::Workloads::default(),
        cdc,
        config,
    });
    let pubsub = crate::pubsub::serve(
        &state.config.pubsub_listen,
        &cert_pem,
        &key_pem,
        state.clone(),
    )
    .await?;
    let app_state = state.clone();
    let app = move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::PayloadConfig::new(256 * 1024 * 1024))
            .wrap(from_fn(api_guard))
            .configure(control::routes)
            .configure(login::routes)
            .configure(bulk_v1::routes)
            .configure(bulk_v2::routes)
            .configure(rest::routes)
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    let server = crate::http::serve::serve(listener, tls.map(|t| t.server), workers, app)?;
    let handle = server.handle();
    tokio::spawn(server);
    Ok(RunningSim {
        info,
        state,
        pubsub_endpoint: pubsub.endpoint.clone(),
        handle,
        pubsub,
    })
}
