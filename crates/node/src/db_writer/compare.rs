//! `driftless verify`'s database half: Salesforce's records arrive as [`Batch`]es into the
//! staging table inside one transaction; the comparison is then a few joins, and a repair is the
//! sync's own merge.

use std::sync::Arc;

use actix::prelude::*;
use driftless_core::dml;
use driftless_core::ident::QualifiedName;
use driftless_core::mapping::ResolvedMapping;
use driftless_core::state::rejects;
use driftless_core::state::{MappingKey, MAPPING_STATE_TABLE};
use tokio::sync::mpsc;

use super::sync::{copy_and_merge, copy_rows};
use super::DbWriter;
use crate::error::{NodeError, Result};
use crate::rows::Row;
use crate::verify::MappingReport;

/// What the Salesforce side of verify sends.
pub enum Batch {
    Rows(Vec<Row>),
    /// Every record was sent: only then may the comparison (and a repair) run.
    End,
}

/// Compares (and with `repair`, fixes) the mapping's table against what arrives on `rx`.
#[derive(Message)]
#[rtype(result = "Result<MappingReport>")]
pub struct Compare {
    pub key: MappingKey,
    pub mapping: Arc<ResolvedMapping>,
    pub rx: mpsc::Receiver<Batch>,
    pub repair: bool,
    pub max_listed: i64,
}

impl Handler<Compare> for DbWriter {
    type Result = ResponseFuture<Result<MappingReport>>;
    fn handle(&mut self, msg: Compare, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move { compare(&mut session, msg).await })
    }
}

async fn compare(client: &mut tokio_postgres::Client, mut msg: Compare) -> Result<MappingReport> {
    let schema = msg.key.schema.clone();
    let mapping = msg.mapping.clone();
    let tx = client.transaction().await?;
    tx.batch_execute(&dml::create_staging_table(&schema, &mapping))
        .await?;
    loop {
        match msg.rx.recv().await {
            Some(Batch::Rows(rows)) => copy_rows(&tx, &schema, &mapping, &rows).await?,
            Some(Batch::End) => break,
            None => return Err(NodeError::Stopped("salesforce read")),
        }
    }
    let diff = differences_sql(&msg.key, &mapping);
    let counts = count_differences(&tx, &diff).await?;
    let examples = tx
        .query(
            &format!("SELECT kind, sfid FROM ({diff}) d ORDER BY kind, sfid LIMIT $1"),
            &[&msg.max_listed],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
            )
        })
        .collect();
    let mut report = MappingReport {
        connection: msg.key.connection.clone(),
        object: msg.key.object.clone(),
        counts,
        examples,
        ..Default::default()
    };
    report.remaining = report.differences();
    if msg.repair && report.remaining > 0 {
        tx.batch_execute("SAVEPOINT driftless_repair").await?;
        match repair(&tx, &msg.key, &mapping).await {
            Ok(repaired) => {
                tx.batch_execute("RELEASE SAVEPOINT driftless_repair")
                    .await?;
                report.repaired = repaired;
            }
            Err(NodeError::Db(e)) if rejects::is_record_error(&e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT driftless_repair")
                    .await?;
                report.repair_error = Some(driftless_core::pgerror::describe(&e));
            }
            Err(e) => return Err(e),
        }
        report.remaining = count_differences(&tx, &diff)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum();
    }
    tx.commit().await?;
    Ok(report)
}

/// The sync's merge over the staged rows, then what Salesforce no longer has; counted as drift.
async fn repair(
    tx: &tokio_postgres::Transaction<'_>,
    key: &MappingKey,
    mapping: &ResolvedMapping,
) -> Result<i64> {
    let schema = &key.schema;
    // The staging rows are already there: merge them with no new COPY.
    let (deleted, changed) = copy_and_merge(tx, schema, mapping, key, &[]).await?;
    let target = QualifiedName::new(schema, &mapping.table);
    let stage = dml::staging_table(schema, mapping);
    let extra = tx
        .execute(
            &format!(
                "DELETE FROM {target} t WHERE t.sfid IS NULL OR NOT EXISTS \
                 (SELECT 1 FROM {stage} s WHERE s.sfid = t.sfid)"
            ),
            &[],
        )
        .await? as i64;
    let repaired = deleted + changed + extra;
    tx.execute(
        &format!(
            "UPDATE {schema}.\"{MAPPING_STATE_TABLE}\" SET drift_records = drift_records + $3, \
             updated_at = now() WHERE connection = $1 AND object_name = $2"
        ),
        &[&key.connection, &key.object, &repaired],
    )
    .await?;
    Ok(repaired)
}

async fn count_differences(
    tx: &tokio_postgres::Transaction<'_>,
    diff: &str,
) -> Result<Vec<(String, i64)>> {
    Ok(tx
        .query(
            &format!("SELECT kind, count(*) FROM ({diff}) d GROUP BY kind ORDER BY kind"),
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

fn differences_sql(key: &MappingKey, mapping: &ResolvedMapping) -> String {
    let target = QualifiedName::new(&key.schema, &mapping.table);
    let stage = dml::staging_table(&key.schema, mapping);
    let cols = dml::staging_columns(mapping);
    let fields = &cols[3..];
    let values_differ = if fields.is_empty() {
        String::new()
    } else {
        let list = |p: &str| {
            fields
                .iter()
                .map(|(c, _)| format!("{p}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(" OR ROW({}) IS DISTINCT FROM ROW({})", list("t"), list("s"))
    };
    format!(
        "SELECT 'missing'::text AS kind, s.sfid::text AS sfid FROM {stage} s \
           WHERE NOT s.isdeleted AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.sfid = s.sfid) \
         UNION ALL \
         SELECT 'stale', s.sfid FROM {stage} s JOIN {target} t ON t.sfid = s.sfid \
           WHERE NOT s.isdeleted AND (t.systemmodstamp IS DISTINCT FROM s.systemmodstamp{values_differ}) \
         UNION ALL \
         SELECT 'deleted_in_salesforce', s.sfid FROM {stage} s JOIN {target} t ON t.sfid = s.sfid \
           WHERE s.isdeleted \
         UNION ALL \
         SELECT 'not_in_salesforce', t.sfid FROM {target} t \
           WHERE t.sfid IS NULL OR NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.sfid = t.sfid)"
    )
}
