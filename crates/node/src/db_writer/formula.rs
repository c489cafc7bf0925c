//! Formula refresh: re-read formula values written without touching the rows' SystemModstamp,
//! fenced like the data path, with the mapping's counters in the same transaction.

use actix::prelude::*;
use driftless_core::formula_dml;
use driftless_core::ident::{Ident, QualifiedName};
use driftless_core::mapping::ResolvedField;
use driftless_core::state::{self, MappingKey};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::DbWriter;
use crate::error::Result;
use crate::rows::Row;

/// Rows of sfid then the formula fields in `fields` order; answers how many rows changed.
#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct RefreshFormulas {
    pub key: MappingKey,
    pub epoch: i64,
    pub table: Ident,
    pub fields: Vec<ResolvedField>,
    pub rows: Vec<Row>,
    /// API calls the refresh made since the last commit, added to the mapping's counters.
    pub api_calls: i64,
}

impl Handler<RefreshFormulas> for DbWriter {
    type Result = ResponseFuture<Result<i64>>;
    fn handle(&mut self, msg: RefreshFormulas, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move {
            let client: &mut tokio_postgres::Client = &mut session;
            let tx = client.transaction().await?;
            state::fence(&tx, &msg.key, msg.epoch).await?;
            tx.batch_execute(driftless_core::writeback::SUPPRESS_CAPTURE)
                .await?;
            let schema = &msg.key.schema;
            let mut changed = 0;
            if !msg.rows.is_empty() {
                tx.batch_execute(&formula_dml::create_staging_table(
                    schema,
                    &msg.table,
                    &msg.fields,
                ))
                .await?;
                let types: Vec<Type> = formula_dml::staging_columns(&msg.fields)
                    .iter()
                    .map(|(_, t)| t.postgres_type())
                    .collect();
                let sink = tx
                    .copy_in(&formula_dml::copy_into_staging(
                        schema,
                        &msg.table,
                        &msg.fields,
                    ))
                    .await?;
                let writer = BinaryCopyInWriter::new(sink, &types);
                pin_mut!(writer);
                for row in &msg.rows {
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        row.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                    writer.as_mut().write(&refs).await?;
                }
                writer.finish().await?;
                changed = tx
                    .query_one(
                        &formula_dml::update_from_staging(schema, &msg.table, &msg.fields),
                        &[],
                    )
                    .await?
                    .get(0);
            }
            state::commit_formula_refresh(&tx, &msg.key, changed, msg.api_calls).await?;
            tx.commit().await?;
            Ok(changed)
        })
    }
}

/// The sfids of a mapped table's rows stamped in `[from, until)`: the parents a mapped parent
/// mapping's polls brought in, found without an API call.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>>")]
pub struct ChangedSfids {
    pub table: QualifiedName,
    pub from: chrono::NaiveDateTime,
    pub until: chrono::NaiveDateTime,
}

impl Handler<ChangedSfids> for DbWriter {
    type Result = ResponseFuture<Result<Vec<String>>>;
    fn handle(&mut self, msg: ChangedSfids, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            let rows = session
                .query(
                    &format!(
                        "SELECT sfid FROM {} WHERE systemmodstamp >= $1 AND systemmodstamp < $2 \
                         AND sfid IS NOT NULL",
                        msg.table
                    ),
                    &[&msg.from, &msg.until],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}

/// Rows of `table` whose `column` (a mapped lookup) holds one of `ids`: how many children a
/// refresh will read, known without a COUNT() call when the lookup is mapped.
#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct CountReferring {
    pub table: QualifiedName,
    pub column: Ident,
    pub ids: Vec<String>,
}

impl Handler<CountReferring> for DbWriter {
    type Result = ResponseFuture<Result<i64>>;
    fn handle(&mut self, msg: CountReferring, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            let row = session
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE {}::text = ANY($1)",
                        msg.table, msg.column
                    ),
                    &[&msg.ids],
                )
                .await?;
            Ok(row.get(0))
        })
    }
}
