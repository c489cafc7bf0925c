//! The `driftless` binary: argument parsing and process roles. Each role lives in its crate;
//! this file only wires the command line to them.

mod cert_cmd;
mod cluster_cmd;
mod ctl_cmd;
mod demo;
mod demo_cmd;
mod logging;
mod run_cmd;
mod sim_cmd;
mod verify_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "driftless",
    version,
    about = "Keeps Salesforce orgs and PostgreSQL databases in sync, in both directions, and proves that nothing drifted"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Salesforce org simulator (REST, SOAP login, OAuth, Bulk 1.0/2.0, long transactions, faults)
    Sim(sim_cmd::SimArgs),
    /// Run the coordinator and one worker in one process: keep every mapped object in its table
    Run(run_cmd::RunArgs),
    /// Compare Salesforce and Postgres record by record; exit 0 when they match
    Verify(verify_cmd::VerifyArgs),
    /// Run the coordinator of a cluster: assign mappings to workers, keep leases, serve admin
    Coordinator(cluster_cmd::CoordinatorArgs),
    /// Run one worker of a cluster: take mappings from the coordinator and sync them
    Worker(cluster_cmd::WorkerArgs),
    /// Send admin messages to the coordinator
    Ctl(ctl_cmd::CtlArgs),
    /// Make a CA and a server certificate for the coordinator's HTTPS listener
    Cert(cert_cmd::CertArgs),
    /// The first run: a simulated org, Postgres, sync with progress bars, and a drift report
    #[command(long_about = demo_cmd::LONG_ABOUT)]
    Demo(demo_cmd::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws progress bars: only warnings may interrupt them unless RUST_LOG says more.
    logging::init(if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    let result = match cli.command {
        Command::Sim(args) => sim_cmd::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Verify(args) => verify_cmd::run(args),
        Command::Coordinator(args) => cluster_cmd::run_coordinator(args),
        Command::Worker(args) => cluster_cmd::run_worker(args),
        Command::Ctl(args) => ctl_cmd::run(args),
        Command::Cert(args) => cert_cmd::run(args),
        Command::Demo(args) => demo_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftless: {e:#}");
            ExitCode::from(e.downcast_ref::<UsageError>().map_or(1, |_| 2))
        }
    }
}

/// A usage or configuration error: exit code 2, as SPEC.md section 1 fixes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
