//! `GET /limits`: the org's allowances, as integers (reference section 2.8). tap-salesforce reads
//! `DailyBulkApiBatches` before every bulk query, so it must be present.

use super::{Ctx, Reply};
use serde_json::{json, Value as Json};
use std::sync::atomic::Ordering::Relaxed;

fn limit(max: u64, used: u64) -> Json {
    json!({"Max": max, "Remaining": max.saturating_sub(used)})
}

pub(super) fn limits(ctx: &Ctx) -> Reply {
    let st = &ctx.state;
    let batches = st.stats.bulk_v1_batches.load(Relaxed);
    let bulk_jobs = st.stats.bulk_v1_jobs.load(Relaxed);
    let v2_jobs = st.stats.bulk_v2_jobs.load(Relaxed);
    Reply::ok(&json!({
        "ConcurrentAsyncGetReportInstances": limit(200, 0),
        "ConcurrentSyncReportRuns": limit(20, 0),
        "DailyApiRequests": limit(st.api_quota(), st.stats.used()),
        "DailyAsyncApexExecutions": limit(250000, 0),
        "DailyBulkApiBatches": limit(15000, batches),
        "DailyBulkApiRequests": limit(15000, batches + bulk_jobs),
        "DailyBulkV2QueryFileStorageMB": limit(976562, 0),
        "DailyBulkV2QueryJobs": limit(10000, v2_jobs),
        "DailyGenericStreamingApiEvents": limit(10000, 0),
        "DailyStreamingApiEvents": limit(10000, 0),
        "DataStorageMB": limit(1024, 0),
        "FileStorageMB": limit(1024, 0),
        "HourlyODataCallout": limit(10000, 0),
        "HourlyTimeBasedWorkflow": limit(50, 0),
        "MassEmail": limit(10, 0),
        "SingleEmail": limit(15, 0),
        "StreamingApiConcurrentClients": limit(20, 0),
    }))
}
