//! `driftless ctl`: admin messages to the coordinator (SPEC.md §6), protobuf over HTTP
//! (proto/admin.proto). Exit 0 when the coordinator did what was asked, 1 when the call failed
//! (unreachable, refused token, refused request), 2 for a wrong command line.

mod client;
mod render;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use driftless_proto::admin::{self, admin_service as rpc};
use serde_json::json;

use crate::UsageError;
use client::Coordinator;

#[derive(Args, Debug)]
#[command(after_help = "Every command needs the admin token: --token or DRIFTLESS_ADMIN_TOKEN.")]
pub struct CtlArgs {
    /// The coordinator's admin address: its [coordinator].listen, with or without http:// (https://
    /// when it has tls_cert; without a scheme, --ca-cert means https)
    #[arg(long, global = true, default_value = "http://127.0.0.1:7400")]
    coordinator: String,
    /// The admin token ([coordinator].admin_token)
    #[arg(
        long,
        global = true,
        env = "DRIFTLESS_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print one JSON document instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// A CA certificate (PEM) to trust for an https:// coordinator, besides the system roots
    #[arg(long, global = true, env = "DRIFTLESS_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Workers and every mapping with its state and counters
    Status,
    /// The workers, their version and the mappings each runs
    Workers,
    /// Every mapping's state and counters
    Mappings {
        /// Only this connection's mappings
        #[arg(long)]
        connection: Option<String>,
    },
    /// One object's mapping in detail: access, polling interval, fields, owner epoch, last error
    Mapping {
        /// The Salesforce object, e.g. Account
        object: String,
        /// Only this connection's mapping of it (default: every connection's)
        #[arg(long)]
        connection: Option<String>,
    },
    /// Stop polling every mapping of a connection; persists across restarts until resume
    Pause {
        /// The connection's name in the config
        connection: String,
    },
    /// Start a paused connection's mappings again from their committed progress
    Resume {
        /// The connection's name in the config
        connection: String,
    },
    /// Empty a mapping's table and load it again from Salesforce (Heroku Connect's reload)
    Reload {
        /// The connection's name in the config
        connection: String,
        /// The Salesforce object, e.g. Account
        object: String,
    },
    /// Print a connection's mappings in Heroku Connect's export format
    Export {
        /// The connection's name in the config
        connection: String,
    },
    /// Validate a mappings file (Heroku Connect's format) and apply it to a running connection
    #[command(
        after_help = "Like Heroku Connect's import, mappings the file does not name are left alone; \
                      --replace removes them. Nothing changes when the file is invalid."
    )]
    Import {
        /// The connection's name in the config
        connection: String,
        /// The mappings file to import
        file: PathBuf,
        /// The file is the connection's whole new set of mappings: stop the ones it does not name
        #[arg(long)]
        replace: bool,
    },
    /// Drift caught by secondary polls, per mapping
    Drift {
        /// Only this connection's mappings
        connection: Option<String>,
    },
    /// Mappings that failed, how often, the last error and when
    Errors {
        /// Only this connection's mappings
        connection: Option<String>,
    },
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| UsageError("ctl needs --token or DRIFTLESS_ADMIN_TOKEN".into()))?;
    // Read before any request, so a wrong path is a usage error and nothing is sent.
    let import = match &args.command {
        CtlCommand::Import { file, .. } => Some(
            std::fs::read(file)
                .map_err(|e| UsageError(format!("import: cannot read {}: {e}", file.display())))?,
        ),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let coordinator =
        Coordinator::new(&args.coordinator, token, args.ca_cert.as_deref()).map_err(UsageError)?;
    let out = rt.block_on(execute(&coordinator, args.command, import, args.json))?;
    print!("{out}");
    Ok(())
}

/// Runs one command; returns what to print.
async fn execute(
    c: &Coordinator,
    command: CtlCommand,
    import: Option<Vec<u8>>,
    json: bool,
) -> anyhow::Result<String> {
    let doc = |v: serde_json::Value| -> anyhow::Result<String> {
        Ok(format!("{}\n", serde_json::to_string_pretty(&v)?))
    };
    Ok(match command {
        CtlCommand::Status => {
            let r = c.call::<rpc::Status>(&admin::StatusRequest {}).await?;
            if json {
                return doc(render::status_json(&r));
            }
            format!(
                "{}\n{}",
                render::workers_table(&r.workers),
                render::mappings_table(&r.mappings)
            )
        }
        CtlCommand::Workers => {
            let r = c.call::<rpc::Workers>(&admin::WorkersRequest {}).await?;
            if json {
                let workers: Vec<_> = r
                    .workers
                    .iter()
                    .map(|w| render::worker_json(w, true))
                    .collect();
                return doc(json!({ "workers": workers }));
            }
            render::workers_table(&r.workers)
        }
        CtlCommand::Mappings { connection } => {
            let r = c
                .call::<rpc::Mappings>(&admin::MappingsRequest { connection })
                .await?;
            if json {
                let mappings: Vec<_> = r.mappings.iter().map(render::mapping_json).collect();
                return doc(json!({ "mappings": mappings }));
            }
            render::mappings_table(&r.mappings)
        }
        CtlCommand::Mapping { object, connection } => {
            let r = c
                .call::<rpc::Mapping>(&admin::MappingRequest { object, connection })
                .await?;
            if json {
                let mappings: Vec<_> = r.mappings.iter().map(render::detail_json).collect();
                return doc(json!({ "mappings": mappings }));
            }
            let parts: Vec<String> = r.mappings.iter().map(render::detail_text).collect();
            parts.join("\n")
        }
        CtlCommand::Pause { connection } => {
            let r = c
                .call::<rpc::Pause>(&admin::PauseRequest {
                    connection: connection.clone(),
                })
                .await?;
            if json {
                return doc(json!({"connection": connection, "paused": r.mappings}));
            }
            listed("paused", &r.mappings)
        }
        CtlCommand::Resume { connection } => {
            let r = c
                .call::<rpc::Resume>(&admin::ResumeRequest {
                    connection: connection.clone(),
                })
                .await?;
            if json {
                return doc(json!({"connection": connection, "resumed": r.mappings}));
            }
            listed("resumed", &r.mappings)
        }
        CtlCommand::Reload { connection, object } => {
            let r = c
                .call::<rpc::Reload>(&admin::ReloadRequest {
                    connection: connection.clone(),
                    object: object.clone(),
                })
                .await?;
            if json {
                return doc(json!({"connection": connection, "object": object, "state": r.state}));
            }
            format!("{connection}/{object}: {}\n", r.state)
        }
        CtlCommand::Export { connection } => {
            let r = c
                .call::<rpc::Export>(&admin::ExportRequest { connection })
                .await?;
            // The export format is JSON already, with or without --json.
            format!("{}\n", r.mappings_json.trim_end())
        }
        CtlCommand::Import {
            connection,
            replace,
            ..
        } => {
            let r = c
                .call::<rpc::Import>(&admin::ImportRequest {
                    connection,
                    contents: import.unwrap_or_default(),
                    replace,
                })
                .await?;
            if json {
                return doc(json!({"added": r.added, "changed": r.changed, "removed": r.removed}));
            }
            let mut t = render::Table::new(&["CHANGE", "OBJECT"]);
            for (kind, names) in [
                ("added", &r.added),
                ("changed", &r.changed),
                ("removed", &r.removed),
            ] {
                for n in names {
                    t.row(vec![kind.to_owned(), n.clone()]);
                }
            }
            if r.added.is_empty() && r.changed.is_empty() && r.removed.is_empty() {
                "no changes\n".to_owned()
            } else {
                t.render()
            }
        }
        CtlCommand::Drift { connection } => {
            let r = c
                .call::<rpc::Drift>(&admin::DriftRequest { connection })
                .await?;
            if json {
                return doc(render::drift_json(&r));
            }
            render::drift_table(&r)
        }
        CtlCommand::Errors { connection } => {
            let r = c
                .call::<rpc::Errors>(&admin::ErrorsRequest { connection })
                .await?;
            if json {
                return doc(render::errors_json(&r));
            }
            if r.errors.is_empty() {
                return Ok("no errors\n".to_owned());
            }
            render::errors_table(&r)
        }
    })
}

fn listed(what: &str, mappings: &[String]) -> String {
    let mut t = render::Table::new(&["MAPPING", "NOW"]);
    for m in mappings {
        t.row(vec![m.clone(), what.to_owned()]);
    }
    t.render()
}
