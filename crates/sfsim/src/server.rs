//! Starting and stopping a simulator: the org, its dataset, and the HTTP(S) listener.

use crate::config::{SimConfig, SimInfo, CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME};
use crate::faults::Faults;
use crate::http::{api_guard, AppState};
use crate::schema::Schema;
use crate::sessions::Sessions;
use crate::store::Org;
use crate::{bulk_v1, bulk_v2, control, dataset, login, rest, stats::Stats, workload};
use actix_web::{middleware::from_fn, web, App, HttpServer};
use anyhow::Context;
use parking_lot::RwLock;

/// A simulator serving in the background of the current tokio runtime.
pub struct RunningSim {
    pub info: SimInfo,
    pub state: web::Data<AppState>,
    handle: actix_web::dev::ServerHandle,
}

impl RunningSim {
    /// Stops the workload and the listener; open transactions commit first.
    pub async fn stop(self) {
        self.state.workload.stop_all(&self.state.org).await;
        self.handle.stop(true).await;
    }

    pub fn base_url(&self) -> &str {
        &self.info.instance_url
    }
}

/// Builds the org (with its dataset), binds the listener and starts serving.
pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
    let org = Org::new(Schema::standard());
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
    let tls = if config.tls || config.tls_cert.is_some() {
        Some(crate::tls::setup(
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            &config.tls_sans,
            config.cert_dir.as_deref(),
        )?)
    } else {
        None
    };
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
        ca_cert: tls.as_ref().map(|t| t.ca_cert.display().to_string()),
    };
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
        config,
    });
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::PayloadConfig::new(256 * 1024 * 1024))
            .wrap(from_fn(api_guard))
            .configure(control::routes)
            .configure(login::routes)
            .configure(bulk_v1::routes)
            .configure(bulk_v2::routes)
            .configure(rest::routes)
    })
    .workers(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2),
    )
    .shutdown_timeout(5)
    // Whoever embeds the simulator decides what a signal means (`driftless sim` stops it, the
    // demo stops everything in order): actix must not stop the server on its own.
    .disable_signals();
    let server = match tls {
        Some(t) => server.listen_rustls_0_23(listener, t.server)?,
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(RunningSim {
        info,
        state,
        handle,
    })
}
