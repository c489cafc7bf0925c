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
use driftless_core::mapping::{resolve, ResolvedMapping};
use driftless_core::state::MappingKey;
use salesforce::{QueryOperation, Record};
use tokio::sync::mpsc;

use crate::db_writer::{Batch, Close, Compare, DbWriter};
use crate::error::{NodeError, Result};
use crate::rows::{Row, RowBuilder};
use crate::salesforce_client::{self as sf, ReadCost, RecordSink};
use crate::validate::validate;

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
    /// Why the repair wrote nothing: a record Postgres rejects (the sync quarantines such a
    /// record; verify reports it as a difference rather than aborting).
    pub repair_error: Option<String>,
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
            let mapping = Arc::new(resolve(&v.mapping, &v.describe).map_err(|errors| {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                NodeError::config(format!("{}: {}", v.mapping.object_name, text.join("; ")))
            })?);
            reports
                .push(verify_mapping(conn, &writer, mapping, &v.mapping.object_name, opts).await?);
        }
        let _ = writer.send(Close).await;
    }
    if !matched {
        return Err(NodeError::config(format!(
            "no mapping matches --connection {} --mapping {}",
            opts.connection.as_deref().unwrap_or("*"),
            opts.mapping.as_deref().unwrap_or("*")
        )));
    }
    Ok(reports)
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
