//! HTTPS for the simulator: a given certificate and key, or a generated CA and a leaf for
//! 127.0.0.1, localhost and every `--tls-san`, so clients can trust the CA file it reports.

use anyhow::{anyhow, Context};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct TlsSetup {
    pub server: rustls::ServerConfig,
    /// The PEM clients should trust (the generated CA, or the given certificate).
    pub ca_cert: PathBuf,
    /// The served chain and its key, for listeners that take PEM (the Pub/Sub endpoint).
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn setup(
    cert: Option<&Path>,
    key: Option<&Path>,
    sans: &[String],
    dir: Option<&Path>,
) -> anyhow::Result<TlsSetup> {
    let (cert_pem, key_pem, ca_path) = match (cert, key) {
        (Some(c), Some(k)) => (
            std::fs::read_to_string(c)
                .with_context(|| format!("reading --tls-cert {}", c.display()))?,
            std::fs::read_to_string(k)
                .with_context(|| format!("reading --tls-key {}", k.display()))?,
            c.to_path_buf(),
        ),
        (None, None) => generate(sans, dir)?,
        _ => return Err(anyhow!("--tls-cert and --tls-key must be given together")),
    };
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the TLS certificate PEM")?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .context("parsing the TLS key PEM")?
        .ok_or_else(|| anyhow!("no private key in the TLS key PEM"))?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("building the TLS server configuration")?;
    Ok(TlsSetup {
        server,
        ca_cert: ca_path,
        cert_pem,
        key_pem,
    })
}

/// A CA and a leaf it signed for 127.0.0.1, localhost and `sans`, as PEM.
pub struct Generated {
    pub ca_pem: String,
    /// The served chain: leaf, then CA.
    pub chain_pem: String,
    pub key_pem: String,
}

/// Makes a CA and a server certificate it signed (`driftless cert`, and `--tls` without files).
pub fn generate_pems(sans: &[String]) -> anyhow::Result<Generated> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A unique name per CA: clients that trust several of them in one bundle pick
    // the issuer by name, and identical names make OpenSSL try the wrong key.
    let ca_name = format!(
        "Driftless CA {}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;

    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    names.extend(sans.iter().cloned());
    names.dedup();
    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "driftless");
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

    Ok(Generated {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: leaf_key.serialize_pem(),
    })
}

fn generate(sans: &[String], dir: Option<&Path>) -> anyhow::Result<(String, String, PathBuf)> {
    let made = generate_pems(sans)?;
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("driftless-sim-{}", uuid::Uuid::new_v4())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_path = dir.join("sim-ca.pem");
    std::fs::write(&ca_path, &made.ca_pem)
        .with_context(|| format!("writing {}", ca_path.display()))?;
    Ok((made.chain_pem, made.key_pem, ca_path))
}
