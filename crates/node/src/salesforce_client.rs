//! The Salesforce side: a client per mapping from the connection's config, describes in core's
//! model, and the reads the pollers share (REST query or one Bulk job over several windows).

use std::time::Duration;

use driftless_core::config::ConnectionConfig;
use driftless_core::describe::{FieldDescribe, ObjectDescribe};
use driftless_core::mapping::ResolvedMapping;
use driftless_core::window::Window;
use futures::StreamExt;
use salesforce::{BatchState, BulkV1Options, Client, ClientConfig, QueryOperation, Record};

use crate::error::Result;

/// A client of its own per mapping, so its usage counters are that mapping's API calls.
pub fn client(conn: &ConnectionConfig) -> Result<Client> {
    let sf = &conn.salesforce;
    let mut config = ClientConfig::new(sf.login_url.clone(), sf.auth.clone());
    config.api_version = sf.api_version.clone();
    config.ca_cert = sf.ca_cert.clone();
    config.request_timeout = Duration::from_secs(sf.request_timeout_secs);
    // Polls are short; waiting a day for a Bulk job would stall the mapping silently.
    config.bulk_timeout = Duration::from_secs(3600);
    config.poll.initial = Duration::from_millis(200);
    config.poll.max = Duration::from_secs(5);
    Ok(Client::new(config)?)
}

/// Core's slice of a describe.
pub fn to_core(d: &salesforce::SObjectDescribe) -> ObjectDescribe {
    ObjectDescribe {
        name: d.summary.name.clone(),
        fields: d
            .fields
            .iter()
            .map(|f| FieldDescribe {
                name: f.name.clone(),
                sf_type: field_type_name(&f.field_type),
                length: f.length,
                precision: f.precision,
                scale: f.scale,
                external_id: f.external_id,
                unique: f.unique,
                nillable: f.nillable,
                calculated: f.calculated,
                calculated_formula: f.calculated_formula.clone(),
                reference_to: f.reference_to.clone(),
                relationship_name: f.relationship_name.clone(),
            })
            .collect(),
    }
}

fn field_type_name(t: &salesforce::FieldType) -> String {
    use salesforce::FieldType as F;
    match t {
        F::Id => "id",
        F::Reference => "reference",
        F::String => "string",
        F::TextArea => "textarea",
        F::Picklist => "picklist",
        F::MultiPicklist => "multipicklist",
        F::Combobox => "combobox",
        F::Email => "email",
        F::Phone => "phone",
        F::Url => "url",
        F::EncryptedString => "encryptedstring",
        F::Boolean => "boolean",
        F::Int => "int",
        F::Long => "long",
        F::Double => "double",
        F::Currency => "currency",
        F::Percent => "percent",
        F::Date => "date",
        F::DateTime => "datetime",
        F::Time => "time",
        F::Base64 => "base64",
        F::Address => "address",
        F::Location => "location",
        F::AnyType => "anyType",
        F::Other(s) => return s.clone(),
    }
    .to_owned()
}

pub fn select(fields: &[&str], object: &str, condition: Option<&str>) -> String {
    let mut soql = format!("SELECT {} FROM {object}", fields.join(", "));
    if let Some(c) = condition {
        soql.push_str(" WHERE ");
        soql.push_str(c);
    }
    soql
}

/// Where streamed records go, one at a time (so memory never holds a whole result).
pub(crate) trait RecordSink {
    async fn push(&mut self, record: Record) -> Result<()>;

    /// A Bulk batch was read to its end.
    fn batch_done(&mut self) {}
}

/// What a read cost, for the status counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadCost {
    pub rest_queries: i64,
    pub bulk_jobs: i64,
    pub bulk_batches: i64,
}

/// One window's read with queryAll, the same for a primary poll and for the secondary poll that
/// re-reads it (DESIGN.md invariant 5): one Bulk job with one batch per piece of `bulk_batches`
/// when there are any, else one REST query over `window`.
pub(crate) async fn read_window(
    client: &Client,
    mapping: &ResolvedMapping,
    window: &Window,
    bulk_batches: &[Window],
    cost: &mut ReadCost,
    sink: &mut impl RecordSink,
) -> Result<()> {
    let object = &mapping.object_name;
    let fields = mapping.soql_fields();
    if bulk_batches.is_empty() {
        let soql = select(&fields, object, Some(&window.soql_condition()));
        rest_read(client, &soql, QueryOperation::QueryAll, cost, sink).await
    } else {
        let soqls = window_soqls(&fields, object, bulk_batches);
        bulk_read(
            client,
            object,
            QueryOperation::QueryAll,
            &soqls,
            None,
            cost,
            sink,
        )
        .await
    }
}

/// Calls `sink` with the records of `soqls` read through one Bulk 1.0 job (one batch per SOQL),
/// or with PK chunking when `pk_chunk` is set (then `soqls` must hold one SOQL).
pub(crate) async fn bulk_read(
    client: &Client,
    object: &str,
    operation: QueryOperation,
    soqls: &[String],
    pk_chunk: Option<u32>,
    cost: &mut ReadCost,
    sink: &mut impl RecordSink,
) -> Result<()> {
    let options = BulkV1Options {
        pk_chunking: pk_chunk,
        ..Default::default()
    };
    bulk_read_with(client, object, operation, soqls, &options, cost, sink).await
}

/// [`bulk_read`] with every Bulk 1.0 option. Batches are read in the order Salesforce lists
/// them, which for PK chunking is ascending Id ranges.
pub(crate) async fn bulk_read_with(
    client: &Client,
    object: &str,
    operation: QueryOperation,
    soqls: &[String],
    options: &BulkV1Options,
    cost: &mut ReadCost,
    sink: &mut impl RecordSink,
) -> Result<()> {
    let pk_chunk = options.pk_chunking;
    let job = client
        .bulk_v1_query(object, operation, soqls, options)
        .await?;
    cost.bulk_jobs += 1;
    let batch_ids = if pk_chunk.is_some() {
        pk_chunks(&job).await?
    } else {
        job.batches().iter().map(|b| b.id.clone()).collect()
    };
    cost.bulk_batches += batch_ids.len() as i64;
    for id in batch_ids {
        let mut stream = job.stream_batch(&id);
        while let Some(record) = stream.next().await {
            sink.push(record?).await?;
        }
        sink.batch_done();
    }
    Ok(())
}

/// The batches PK chunking made of a job's submitted batch, in ascending Id ranges. The submitted
/// batch turns NotProcessed once it is split; the chunks are listed then.
pub(crate) async fn pk_chunks(job: &salesforce::BulkV1Job) -> Result<Vec<String>> {
    let original: Vec<String> = job.batches().iter().map(|b| b.id.clone()).collect();
    for id in &original {
        job.wait_batch(id).await?;
    }
    Ok(job
        .list_batches()
        .await?
        .into_iter()
        .filter(|b| !original.contains(&b.id) && b.state != BatchState::NotProcessed)
        .map(|b| b.id)
        .collect())
}

/// Calls `sink` with every record of a REST query (`queryAll` includes deleted records).
pub(crate) async fn rest_read(
    client: &Client,
    soql: &str,
    operation: QueryOperation,
    cost: &mut ReadCost,
    sink: &mut impl RecordSink,
) -> Result<()> {
    cost.rest_queries += 1;
    let mut stream = client.rest_query(soql, operation);
    while let Some(record) = stream.next().await {
        sink.push(record?).await?;
    }
    Ok(())
}

/// The SOQL of each sub-window of a Bulk read.
pub fn window_soqls(fields: &[&str], object: &str, windows: &[Window]) -> Vec<String> {
    windows
        .iter()
        .map(|w| select(fields, object, Some(&w.soql_condition())))
        .collect()
}
