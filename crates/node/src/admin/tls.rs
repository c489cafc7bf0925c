//! The listener's TLS: `[coordinator] tls_cert`/`tls_key` (PEM) into a rustls server
//! configuration. Tokens and the connection settings the coordinator ships to workers cross this
//! listener, so off loopback it should be HTTPS.

use std::sync::Arc;

use driftless_core::config::TlsFiles;

pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, String> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| format!("coordinator.{key}: cannot read {}: {e}", path.display()))
    };
    let cert_pem = read("tls_cert", &files.cert)?;
    let key_pem = read("tls_key", &files.key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "coordinator.tls_cert: {}: not PEM: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "coordinator.tls_cert: {} holds no certificate",
            files.cert.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("coordinator.tls_key: {}: not PEM: {e}", files.key.display()))?
        .ok_or_else(|| {
            format!(
                "coordinator.tls_key: {} holds no private key",
                files.key.display()
            )
        })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "coordinator.tls_key: {} does not fit {}: {e}",
                files.key.display(),
                files.cert.display()
            )
        })
}
