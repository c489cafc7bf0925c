//! The database half of `ctl reload`: empty the table and forget the mapping's progress, in one
//! fenced transaction.

use actix::prelude::*;
use driftless_core::ident::QualifiedName;
use driftless_core::state::{self, MappingKey};

use crate::db_writer::DbWriter;
use crate::error::Result;

#[derive(Message)]
#[rtype(result = "Result<()>")]
pub(crate) struct TruncateForReload {
    pub key: MappingKey,
    pub epoch: i64,
    pub table: QualifiedName,
}

impl Handler<TruncateForReload> for DbWriter {
    type Result = ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: TruncateForReload, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool().clone();
        Box::pin(async move {
            let mut obj = pool.get().await?;
            let client: &mut tokio_postgres::Client = &mut obj;
            let tx = client.transaction().await?;
            // Emptying the table is the sync's own write: nothing of it goes to write-back.
            tx.batch_execute(driftless_core::writeback::SUPPRESS_CAPTURE)
                .await?;
            state::fence(&tx, &msg.key, msg.epoch).await?;
            tx.batch_execute(&format!("TRUNCATE {}", msg.table)).await?;
            state::reset_for_reload(&tx, &msg.key, msg.epoch).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
