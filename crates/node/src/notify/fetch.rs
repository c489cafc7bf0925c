//! Reads the records change events named, by Id, and merges them with the replay id reached.

use std::collections::BTreeSet;

use salesforce::QueryOperation;

use crate::db_writer::Progress;
use crate::error::Result;
use crate::mapping_ctx::{MappingCtx, RowBatch};
use crate::salesforce_client::{self as sf, ReadCost};

/// Ids per query: 200 quoted 18-character Ids keep the SOQL near 4 KB, far below Salesforce's
/// 100,000-character limit, and a fetch of a burst's ids still costs few calls.
pub const IDS_PER_QUERY: usize = 200;

/// What one fetch read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fetched {
    pub records: i64,
    pub rest_queries: i64,
}

/// Reads `ids` with queryAll (deleted records come back with IsDeleted) and commits them in
/// fenced transactions, the last one carrying `replay_id`. An id that matches nothing (a record
/// already purged) is left to the window polls, which run getDeleted.
pub async fn fetch_and_merge(
    ctx: &MappingCtx,
    ids: &BTreeSet<String>,
    replay_id: &[u8],
) -> Result<Fetched> {
    let fields = ctx.mapping.soql_fields();
    let mut cost = ReadCost::default();
    let mut batch = RowBatch::new(ctx);
    let ids: Vec<&String> = ids.iter().filter(|id| is_record_id(id)).collect();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let list = chunk
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",");
        let soql = sf::select(&fields, ctx.object(), Some(&format!("Id IN ({list})")));
        sf::rest_read(
            &ctx.client,
            &soql,
            QueryOperation::QueryAll,
            &mut cost,
            &mut batch,
        )
        .await?;
    }
    let records = batch.records;
    batch
        .finish(Progress::Notify {
            replay_id: replay_id.to_vec(),
        })
        .await?;
    Ok(Fetched {
        records,
        rest_queries: cost.rest_queries,
    })
}

/// A 15- or 18-character alphanumeric Id: anything else (a `001*` wildcard of a type
/// conversion) never reaches SOQL, and its change is left to the window poll it wakes.
pub fn is_record_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_reach_soql() {
        assert!(is_record_id("001000000000001AAA"));
        assert!(is_record_id("001000000000001"));
        assert!(!is_record_id("001*"));
        assert!(!is_record_id("001000000000001'"));
        assert!(!is_record_id("001' OR Name != '"));
    }
}
