//! Heroku Connect's manual re-send functions (SPEC.md §5, reference/heroku-connect.md §4.1/§4.9):
//! `<schema>.hc_capture_insert_from_row(hstore, varchar, text[])` (the row, its table, columns to
//! leave out) and `<schema>.hc_capture_update_from_row(hstore, varchar, text[])` (the row, its
//! table, columns to send; none means all), each logging a fresh `NEW` entry and returning its id,
//! or NULL when the row has no `id`, as Connect's do. Applications call them as Connect's docs
//! show: `SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'account', ARRAY[]::text[])
//! FROM salesforce.account t WHERE id = 7`.
//!
//! Both need the `hstore` extension, for their argument type and for `hstore(t.*)` in the caller.
//! [`install`] creates it (in `public`, where Connect puts it) when the database lets us; when it
//! does not, the functions cannot exist and [`install`] says so, and nothing else depends on them:
//! the capture triggers write hstore *text* without the extension.
//!
//! What differs from Connect's bodies, and why:
//! - Values are re-rendered through the table's own column types (`populate_record`, then
//!   `to_jsonb`), so an entry logged here reads exactly like one the triggers logged (ISO 8601
//!   timestamps, `true`/`false`) whatever `hstore(t.*)` printed under the caller's DateStyle.
//! - State `READONLY` for a table without a status trigger (a read_only mapping), as its own
//!   trigger would log it, so nothing is ever queued that no writer sends.
//! - The row's `_hc_lastop` becomes `PENDING` (and `_hc_err` is cleared), so the application sees
//!   the re-send as it sees any captured change; that write is not itself captured.
//! - SECURITY DEFINER with a pinned search_path, like the logger: the calling role needs no grant
//!   on the trigger log.

use tokio_postgres::GenericClient;

use super::capture::pair_fn;
use super::{log_table, NOTIFY_CHANNEL};
use crate::ident::{Ident, QualifiedName};

/// What [`install`] could do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendFunctions {
    /// Both functions exist; the extension lives in this schema.
    Installed { hstore_schema: String },
    /// The extension is not installed and could not be created (the reason is Postgres's error):
    /// the functions do not exist.
    Unavailable { reason: String },
}

impl ResendFunctions {
    /// One line for the log, when the functions could not be made.
    pub fn warning(&self, schema: &Ident) -> Option<String> {
        match self {
            ResendFunctions::Installed { .. } => None,
            ResendFunctions::Unavailable { reason } => Some(format!(
                "the hstore extension is not available in this database ({reason}), so \
                 {s}.hc_capture_insert_from_row and {s}.hc_capture_update_from_row (Heroku \
                 Connect's manual re-send functions) were not created; run CREATE EXTENSION hstore \
                 as a privileged role and restart to get them. Capture and write-back are not \
                 affected.",
                s = schema.as_str()
            )),
        }
    }
}

pub(super) fn insert_fn(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal("hc_capture_insert_from_row"))
}

pub(super) fn update_fn(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal("hc_capture_update_from_row"))
}

/// Creates the extension when missing (inside a savepoint, so a refusal does not abort the
/// caller's transaction) and then both functions. Idempotent.
pub async fn install(
    client: &impl GenericClient,
    schema: &Ident,
) -> Result<ResendFunctions, tokio_postgres::Error> {
    let hstore_schema = match hstore_schema(client).await? {
        Some(s) => s,
        None => {
            client.batch_execute("SAVEPOINT driftless_hstore").await?;
            match client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public")
                .await
            {
                Ok(()) => {
                    client
                        .batch_execute("RELEASE SAVEPOINT driftless_hstore")
                        .await?;
                }
                Err(e) => {
                    client
                        .batch_execute("ROLLBACK TO SAVEPOINT driftless_hstore")
                        .await?;
                    let reason = e
                        .as_db_error()
                        .map(|d| d.message().to_owned())
                        .unwrap_or_else(|| e.to_string());
                    return Ok(ResendFunctions::Unavailable { reason });
                }
            }
            hstore_schema(client)
                .await?
                .unwrap_or_else(|| "public".into())
        }
    };
    for sql in function_sql(schema, &hstore_schema) {
        client.batch_execute(&sql).await?;
    }
    Ok(ResendFunctions::Installed { hstore_schema })
}

async fn hstore_schema(
    client: &impl GenericClient,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'hstore'",
            &[],
        )
        .await?
        .map(|r| r.get(0)))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Both `CREATE OR REPLACE FUNCTION` statements; `hs` is the extension's schema.
pub fn function_sql(schema: &Ident, hs: &str) -> Vec<String> {
    let hs = quote_ident(hs);
    let log = log_table(schema);
    let pair = pair_fn(schema);
    let s = schema.as_str();
    // `keep` are the keys of the row to log; the row is re-read through the table's types so
    // values render as the triggers render them. The table must be in this schema: a name from
    // elsewhere is not a mapped table.
    let body = |action: &str, keep: &str| {
        format!(
            "DECLARE
    keep text[];
    v_state varchar(8);
    v_values text;
    v_rel regclass;
    v_id integer;
    retval integer;
BEGIN
    IF (source_row -> 'id') IS NULL THEN
        -- Connect's contract: the row must carry its integer id.
        RETURN NULL;
    END IF;
    v_id := (source_row -> 'id')::integer;
    v_rel := to_regclass(format('%I.%I', '{s}', table_name));
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'hc_capture: table {s}.% does not exist', table_name
            USING ERRCODE = 'undefined_table';
    END IF;
    {keep}
    EXECUTE format(
        'SELECT string_agg({pair}(j.key, j.value #>> ''{{}}''), '', '' ORDER BY j.key)
         FROM jsonb_each(to_jsonb(populate_record(NULL::%s, $1))) j WHERE j.key = ANY($2)', v_rel)
        INTO v_values USING source_row, keep;
    v_state := CASE WHEN EXISTS (
        SELECT 1 FROM pg_trigger WHERE tgrelid = v_rel AND tgname = 'hc_' || table_name || '_status_trigger'
    ) THEN 'NEW' ELSE 'READONLY' END;
    INSERT INTO {log} (txid, created_at, updated_at, state, action, table_name, record_id, sfid, old, \"values\")
    VALUES (txid_current(), clock_timestamp(), clock_timestamp(), v_state, '{action}', table_name, v_id,
            {sfid}, NULL, coalesce(v_values, ''))
    RETURNING id INTO retval;
    IF v_state = 'NEW' THEN
        EXECUTE format('UPDATE %s SET _hc_lastop = ''PENDING'', _hc_err = NULL WHERE id = $1', v_rel)
            USING v_id;
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '{s}.' || table_name);
    END IF;
    RETURN retval;
END",
            sfid = if action == "INSERT" {
                "NULL"
            } else {
                "source_row -> 'sfid'"
            }
        )
    };
    let insert_keep = "keep := ARRAY(SELECT k FROM unnest(akeys(source_row)) k \
         WHERE k <> ALL (array_remove(array_remove(coalesce(excluded_cols, ARRAY[]::text[]), 'id'), 'sfid') \
                         || ARRAY['_hc_lastop', '_hc_err']));";
    // Connect: an empty list sends every column; else only those listed (that the row has).
    let update_keep = "keep := ARRAY(SELECT k FROM unnest(akeys(source_row)) k \
         WHERE (coalesce(cardinality(columns_to_include), 0) = 0 OR k = ANY(columns_to_include)) \
           AND k <> ALL (ARRAY['_hc_lastop', '_hc_err']));";
    // `driftless.sync` on for the function's duration only: its own write of `_hc_lastop` is not
    // a change to capture, and the caller's setting is restored when it returns.
    let header = |f: &QualifiedName, third: &str| {
        format!(
            "CREATE OR REPLACE FUNCTION {f}(source_row {hs}.hstore, table_name varchar, \
             {third} text[] DEFAULT ARRAY[]::text[]) RETURNS integer LANGUAGE plpgsql \
             SECURITY DEFINER SET search_path = pg_catalog, {hs}, pg_temp SET driftless.sync = 'on' AS $fn$\n"
        )
    };
    vec![
        format!(
            "{}{}\n$fn$",
            header(&insert_fn(schema), "excluded_cols"),
            body("INSERT", insert_keep)
        ),
        format!(
            "{}{}\n$fn$",
            header(&update_fn(schema), "columns_to_include"),
            body("UPDATE", update_keep)
        ),
    ]
}
