//! `driftless cert`: a CA and a server certificate it signed, for the coordinator's HTTPS
//! listener (`[coordinator] tls_cert`/`tls_key`) where no certificate authority is at hand, as in
//! `deploy/docker-compose.yml`. Workers and ctl trust `ca.pem` with `--ca-cert`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug)]
pub struct CertArgs {
    /// Where to write ca.pem, cert.pem (the chain to serve) and key.pem (readable by its owner only)
    #[arg(long)]
    out: PathBuf,
    /// A host name or address the certificate is for, besides 127.0.0.1 and localhost (repeatable)
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Replace files that are already there
    #[arg(long, conflicts_with = "if_missing")]
    force: bool,
    /// Leave files that are already there and succeed (for a container that runs at every start)
    #[arg(long)]
    if_missing: bool,
}

pub fn run(args: CertArgs) -> anyhow::Result<()> {
    let files = ["ca.pem", "cert.pem", "key.pem"].map(|f| args.out.join(f));
    if args.if_missing && files.iter().all(|f| f.exists()) {
        println!("{} already holds a certificate", args.out.display());
        return Ok(());
    }
    if !args.force {
        if let Some(there) = files.iter().find(|f| f.exists()) {
            return Err(crate::UsageError(format!(
                "{} exists (--force replaces it)",
                there.display()
            ))
            .into());
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let made = sfsim::tls::generate_pems(&args.sans)?;
    write(&files[0], &made.ca_pem, 0o644)?;
    write(&files[1], &made.chain_pem, 0o644)?;
    write(&files[2], &made.key_pem, 0o600)?;
    println!(
        "wrote {}, {} and {}",
        files[0].display(),
        files[1].display(),
        files[2].display()
    );
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
