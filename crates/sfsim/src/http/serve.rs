//! The listener: actix's HTTP/1.1 service over plain TCP or rustls, each connection wrapped in
//! [`CasedIo`] so response header names leave in Salesforce's casing. This is what
//! `actix_web::HttpServer::listen{,_rustls_0_23}` do, with that one wrapper added: HttpServer
//! has no hook between the socket and the codec.

use super::wire::CasedIo;
use actix_http::{HttpService, Request, Response};
use actix_server::Server;
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use std::net::TcpListener;

/// Serves `app` on `listener` (over TLS when `tls` is given) with `workers` threads.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    workers: usize,
    app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    B: MessageBody + 'static,
{
    let builder = Server::build()
        .workers(workers)
        .shutdown_timeout(5)
        // Whoever embeds the simulator decides what a signal means (`driftless sim` stops it, the
        // demo stops everything in order): the server must not stop on its own.
        .disable_signals();
    // Idle kept-alive connections close as soon as a stop begins, instead of holding it for the
    // whole shutdown timeout.
    let shutdown = builder.graceful_shutdown_signal();
    let tls_shutdown = shutdown.clone();
    // One HTTP service per worker over whichever stream the listener hands it.
    macro_rules! http_service {
        ($shutdown:expr) => {{
            let shutdown = $shutdown.clone();
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .finish(map_config(
                    app().into_factory().map_err(|e| e.into().error_response()),
                    |_| AppConfig::default(),
                ))
        }};
    }
    let builder = match tls {
        None => builder.listen("sfsim-http", listener, move || {
            let http = http_service!(shutdown);
            fn_service(|io: TcpStream| async move {
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    CasedIo::new(io),
                    actix_http::Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http)
        })?,
        Some(mut config) => {
            // Only HTTP/1.1 is built in (no `http2` feature), so only it is offered.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder.listen("sfsim-https", listener, move || {
                let http = http_service!(tls_shutdown);
                Acceptor::new(config.clone())
                    .map_err(|e| tracing::debug!("TLS handshake failed: {e}"))
                    .and_then(|io: TlsStream<TcpStream>| async move {
                        let _ = io.get_ref().0.set_nodelay(true);
                        let peer = io.get_ref().0.peer_addr().ok();
                        Ok((CasedIo::new(io), actix_http::Protocol::Http1, peer))
                    })
                    .and_then(http.map_err(|e| tracing::debug!("HTTP connection error: {e}")))
            })?
        }
    };
    Ok(builder.run())
}
