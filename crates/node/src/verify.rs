//! `driftless verify`: compares Salesforce and Postgres record by record (Id, SystemModstamp and
//! every mapped field, deletes included) and, with `repair`, fixes what differs through the same
//! merge the sync uses, counting the repairs as drift.
//!
//! Salesforce's records (queryAll, or Bulk above `bulk_threshold`) stream into the staging table
//! inside one transaction; the comparison is then a few joins in Postgres, so memory does not grow
//! with the object.

use std::sync::Arc;

use actix::prelude::*;
use driftless_core::config::{Config, ConnectionConfig};
use driftless_core::dml;
use driftless_core::ident::QualifiedName;
use driftless_core::mapping::{resolve, ResolvedMapping};
use driftless_core::state::{MappingKey, MAPPING_STATE_TABLE};
use salesforce::{QueryOperation, Record};
use tokio::sync::mpsc;

use crate::db_writer::{copy_and_merge, copy_rows, DbWriter};
use crate::error::{NodeError, Result};
use crate::rows::{Row, RowBuilder};
use crate::run::validate;
use crate::sf::{self, ReadCost, RecordSink};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub connection: Option<String>,
    pub mapping: Option<String>,
    pub repair: bool,
    /// Differences listed by sfid per mapping (all are counted).
    pub max_listed: i64,
    pub batch_rows: usize,
}

/// One kind of difference: `missing` (live in Salesforce, absent here), `stale` (stamp or a
/// value differs), `deleted_in_salesforce` (deleted there, still here), `not_in_salesforce`
/// (here, unknown to Salesforce).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingReport {
    pub connection: String,
    pub object: String,
    pub salesforce_records: i64,
    pub counts: Vec<(String, i64)>,
    pub examples: Vec<(String, String)>,
    pub repaired: i64,
    /// Differences left after the repair (all of them without `repair`).
    pub remaining: i64,
}

impl MappingReport {
    pub fn differences(&self) -> i64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

pub async fn verify(config: &Config, opts: &VerifyOptions) -> Result<Vec<MappingReport>> {
    let mut reports = Vec::new();
    let mut matched = false;
    for conn in &config.connections {
        if opts.connection.as_ref().is_some_and(|c| c != &conn.name) {
            continue;
        }
        let validated = validate(conn).await?;
        // One connection: verify may run next to a running engine, which holds the rest.
        let writer = DbWriter::new(conn, "verify", 1)?.start();
        for v in validated {
            if opts
                .mapping
                .as_ref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(&v.mapping.object_name))
            {
                continue;
            }
            matched = true;
            let mapping = Arc::new(
                resolve(&v.mapping, &v.describe)
                    .map_err(|e| NodeError::Config(format!("{e:?}")))?,
            );
            reports
                .push(verify_mapping(conn, &writer, mapping, &v.mapping.object_name, opts).await?);
        }
        let _ = writer.send(crate::db_writer::Shutdown).await;
    }
    if !matched {
        return Err(NodeError::Config(format!(
            "no mapping matches --connection {} --mapping {}",
            opts.connection.as_deref().unwrap_or("*"),
            opts.mapping.as_deref().unwrap_or("*")
        )));
    }
    Ok(reports)
}

enum Batch {
    Rows(Vec<Row>),
    /// Every record was sent: only then may the comparison (and a repair) run.
    End,
}

struct Sender {
    builder: RowBuilder,
    buf: Vec<Row>,
    tx: mpsc::Sender<Batch>,
    batch_rows: usize,
    records: i64,
}

impl RecordSink for Sender {
    async fn push(&mut self, record: Record) -> Result<()> {
        self.buf.push(self.builder.build(&record));
        self.records += 1;
        if self.buf.len() >= self.batch_rows {
            let rows = std::mem::take(&mut self.buf);
            self.tx
                .send(Batch::Rows(rows))
                .await
                .map_err(|_| NodeError::Stopped("verify writer"))?;
        }
        Ok(())
    }
}

async fn verify_mapping(
    conn: &ConnectionConfig,
    writer: &Addr<DbWriter>,
    mapping: Arc<ResolvedMapping>,
    object_as_mapped: &str,
    opts: &VerifyOptions,
) -> Result<MappingReport> {
    let client = sf::client(conn)?;
    let key = MappingKey::new(&conn.schema, &conn.name, object_as_mapped);
    let (tx, rx) = mpsc::channel(2);
    let compare = writer.send(Compare {
        key,
        mapping: mapping.clone(),
        rx,
        repair: opts.repair,
        max_listed: opts.max_listed,
    });
    let read = async {
        let object = mapping.object_name.clone();
        let fields = mapping.soql_fields();
        let soql = sf::select(&fields, &object, None);
        let mut sender = Sender {
            builder: RowBuilder::new(mapping.clone()),
            buf: Vec::new(),
            tx,
            batch_rows: opts.batch_rows.max(1),
            records: 0,
        };
        let mut cost = ReadCost::default();
        let count = client
            .count(&format!("SELECT COUNT() FROM {object}"))
            .await?;
        if count > conn.sync.bulk_threshold {
            let chunk = (count / 4).clamp(1_000, 100_000) as u32;
            sf::bulk_read(
                &client,
                &object,
                QueryOperation::QueryAll,
                &[soql],
                Some(chunk),
                &mut cost,
                &mut sender,
            )
            .await?;
        } else {
            sf::rest_read(
                &client,
                &soql,
                QueryOperation::QueryAll,
                &mut cost,
                &mut sender,
            )
            .await?;
        }
        let rows = std::mem::take(&mut sender.buf);
        let tx = sender.tx.clone();
        tx.send(Batch::Rows(rows))
            .await
            .map_err(|_| NodeError::Stopped("verify writer"))?;
        tx.send(Batch::End)
            .await
            .map_err(|_| NodeError::Stopped("verify writer"))?;
        Ok::<i64, NodeError>(sender.records)
    };
    // On a read failure the sender is dropped before `End`, so the writer rolls back.
    let (read, compared) = futures::join!(read, compare);
    let records = read?;
    let mut report = compared??;
    report.salesforce_records = records;
    Ok(report)
}

#[derive(Message)]
#[rtype(result = "Result<MappingReport>")]
struct Compare {
    key: MappingKey,
    mapping: Arc<ResolvedMapping>,
    rx: mpsc::Receiver<Batch>,
    repair: bool,
    max_listed: i64,
}

impl Handler<Compare> for DbWriter {
    type Result = ResponseFuture<Result<MappingReport>>;
    fn handle(&mut self, msg: Compare, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool().clone();
        Box::pin(async move {
            let mut obj = pool.get().await?;
            let client: &mut tokio_postgres::Client = &mut obj;
            compare(client, msg).await
        })
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
        // The staging rows are already there: merge them with no new COPY.
        let (deleted, changed) = copy_and_merge(&tx, &schema, &mapping, &msg.key, &[]).await?;
        let target = QualifiedName::new(&schema, &mapping.table);
        let stage = dml::staging_table(&schema, &mapping);
        let extra = tx
            .execute(
                &format!(
                    "DELETE FROM {target} t WHERE t.sfid IS NULL OR NOT EXISTS \
                     (SELECT 1 FROM {stage} s WHERE s.sfid = t.sfid)"
                ),
                &[],
            )
            .await? as i64;
        report.repaired = deleted + changed + extra;
        tx.execute(
            &format!(
                "UPDATE {schema}.\"{MAPPING_STATE_TABLE}\" SET drift_records = drift_records + $3, \
                 updated_at = now() WHERE connection = $1 AND object_name = $2"
            ),
            &[&msg.key.connection, &msg.key.object, &report.repaired],
        )
        .await?;
        report.remaining = count_differences(&tx, &diff)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum();
    }
    tx.commit().await?;
    Ok(report)
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
