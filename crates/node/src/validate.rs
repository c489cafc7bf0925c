//! Everything `driftless run` (and `ctl import`, and verify) checks before it starts anything:
//! each mapping of a connection's file against the org's describe, all problems reported at once.

use driftless_core::config::ConnectionConfig;
use driftless_core::describe::ObjectDescribe;
use driftless_core::formula::{self, FormulaPlan};
use driftless_core::mapping::{resolve, Mapping, MappingFile};

use crate::error::{NodeError, Result};
use crate::salesforce_client as sf;

/// Everything `run` checks before it starts anything: a mapping and its describe.
pub(crate) struct Validated {
    pub mapping: Mapping,
    pub describe: ObjectDescribe,
    /// How the mapped formula fields stay fresh; empty (and free) without any.
    pub formula: FormulaPlan,
}

/// Loads the connection's mapping file and checks every mapping against the org's describe.
/// All problems are reported at once, as configuration errors.
pub(crate) async fn validate(conn: &ConnectionConfig) -> Result<Vec<Validated>> {
    let file = MappingFile::load(&conn.mappings).map_err(NodeError::config_caused)?;
    validate_file(conn, &file, &conn.mappings.display().to_string()).await
}

/// Checks every mapping of `file` against the org's describe; errors start with `origin`.
pub(crate) async fn validate_file(
    conn: &ConnectionConfig,
    file: &MappingFile,
    origin: &str,
) -> Result<Vec<Validated>> {
    for unknown in file.unknown_keys() {
        tracing::warn!("{origin}: {unknown}");
    }
    let client = sf::client(conn)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for m in &file.mappings {
        let d = match client.describe(&m.object_name).await {
            Ok(d) => d,
            Err(e) if e.kind() == salesforce::ErrorKind::NotFound => {
                errors.push(format!(
                    "{origin}: mapping {}: object_name: no such object in the Salesforce org",
                    m.object_name
                ));
                continue;
            }
            Err(e) => return Err(startup_error(conn, e)),
        };
        let describe = sf::to_core(&d);
        if let Err(errs) = resolve(m, &describe) {
            errors.extend(errs.into_iter().map(|e| format!("{origin}: {e}")));
            continue;
        }
        let formula = formula_plan(&client, m, &describe).await;
        for f in &formula.fields {
            if let Some(reason) = &f.timed {
                tracing::info!(object = %m.object_name, field = %f.field, "formula refreshed on a timer: {reason}");
            }
        }
        out.push(Validated {
            mapping: m.clone(),
            describe,
            formula,
        });
    }
    if !errors.is_empty() {
        return Err(NodeError::config(errors.join("\n")));
    }
    Ok(out)
}

/// The refresh plan of the mapping's formula fields. A reference two hops away needs the describe
/// of the object in between, fetched only then; one that cannot be fetched leaves that formula
/// to the timed refresh (the plan says why), never an error.
async fn formula_plan(
    client: &salesforce::Client,
    m: &Mapping,
    describe: &ObjectDescribe,
) -> FormulaPlan {
    let mapped: Vec<String> = m.config.fields.keys().cloned().collect();
    let mut between: Vec<ObjectDescribe> = Vec::new();
    for field in mapped.iter().filter_map(|n| describe.field(n)) {
        let Some(parsed) = field
            .calculated_formula
            .as_deref()
            .filter(|_| field.calculated)
            .and_then(|t| ::formula::Formula::parse(t).ok())
        else {
            continue;
        };
        for path in parsed.references() {
            let [first, _, ..] = path.relationships() else {
                continue;
            };
            let Some([to]) = describe
                .relationship(first)
                .map(|f| f.reference_to.as_slice())
            else {
                continue;
            };
            if between.iter().any(|d| d.name.eq_ignore_ascii_case(to)) {
                continue;
            }
            match client.describe(to).await {
                Ok(d) => between.push(sf::to_core(&d)),
                Err(e) => {
                    tracing::warn!(object = %m.object_name, parent = %to, error = %e, "no describe for a formula's parent")
                }
            }
        }
    }
    formula::plan(describe, &mapped, &|name| {
        between
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .cloned()
    })
}

/// Checks a mappings file against the org's describe without starting anything (a cluster
/// coordinator validating `ctl import` before it changes a thing).
pub async fn check_mappings(
    conn: &ConnectionConfig,
    file: &MappingFile,
    origin: &str,
) -> Result<()> {
    validate_file(conn, file, origin).await.map(|_| ())
}

/// Bad credentials or an unusable client setting are configuration errors, not runtime ones.
fn startup_error(conn: &ConnectionConfig, e: salesforce::Error) -> NodeError {
    match e.kind() {
        salesforce::ErrorKind::Authentication | salesforce::ErrorKind::Config => {
            NodeError::config_from(
                format!("connection {}: salesforce login failed", conn.name),
                e,
            )
        }
        _ => NodeError::Salesforce(e),
    }
}
