//! The capture triggers (module docs of [`crate::writeback`]), as SQL generated per mapping. The
//! column lists are spelled out rather than taken from `hstore(NEW)`, so only mapped columns are
//! sent, and [`install_triggers`] regenerates the functions whenever the mapping changes.

use tokio_postgres::GenericClient;

use super::{log_table, side_table, NOTIFY_CHANNEL};
use crate::ident::{Ident, QualifiedName};
use crate::mapping::{Access, ResolvedMapping};

/// `old` carries these besides the mapped columns (Connect's `hstore(OLD)` minus `_hc_lastop` and
/// `_hc_err`), so a DELETE's entry still names the record after the row is gone.
const OLD_SYSTEM_COLUMNS: [&str; 4] = ["id", "sfid", "systemmodstamp", "isdeleted"];

pub(super) fn pair_fn(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal("_driftless_hstore_pair"))
}

fn logger_fn(schema: &Ident, m: &ResolvedMapping) -> QualifiedName {
    QualifiedName::new(
        schema,
        &Ident::internal(&format!("hc_{}_logger", m.table.as_str())),
    )
}

fn status_fn(schema: &Ident, m: &ResolvedMapping) -> QualifiedName {
    QualifiedName::new(
        schema,
        &Ident::internal(&format!("hc_{}_status", m.table.as_str())),
    )
}

/// Statements shared by every table of the schema: the hstore helper, the side table, and the
/// indexes the guard and the claim look entries up by. Idempotent.
fn schema_sql(schema: &Ident) -> Vec<String> {
    let log = log_table(schema);
    let side = side_table(schema);
    vec![
        // Same quoting as hstore's output function, so `::hstore` can read what we write.
        format!(
            "CREATE OR REPLACE FUNCTION {f}(k text, v text) RETURNS text \
             LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$ \
             SELECT '\"' || replace(replace(k, '\\', '\\\\'), '\"', '\\\"') || '\"=>' || \
             coalesce('\"' || replace(replace(v, '\\', '\\\\'), '\"', '\\\"') || '\"', 'NULL') $fn$",
            f = pair_fn(schema)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {side} (
    log_id integer PRIMARY KEY,
    attempts integer NOT NULL DEFAULT 0,
    not_before timestamptz,
    claimed_at timestamptz,
    last_error text
)"
        ),
        // Added after the first release of the table: a failure the application may re-send, and
        // the representative an entry was folded into (Merged Writes).
        format!("ALTER TABLE {side} ADD COLUMN IF NOT EXISTS failed_at timestamptz"),
        format!("ALTER TABLE {side} ADD COLUMN IF NOT EXISTS merged_into integer"),
        super::bulk_job::create_sql(schema),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_driftless_writeback_merged_into\" ON {side} (merged_into) \
             WHERE merged_into IS NOT NULL"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_driftless_trigger_log_record\" ON {log} (table_name, record_id, id)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_driftless_trigger_log_delete_sfid\" ON {log} (table_name, sfid) \
             WHERE action = 'DELETE'"
        ),
    ]
}

/// Every statement [`install_triggers`] runs, in order.
pub fn trigger_sql(schema: &Ident, m: &ResolvedMapping) -> Vec<String> {
    let table = QualifiedName::new(schema, &m.table);
    let t = m.table.as_str();
    let log = log_table(schema);
    let pair = pair_fn(schema);
    let logger = logger_fn(schema, m);
    let status = status_fn(schema, m);
    let read_write = m.access == Access::ReadWrite;
    let base_state = if read_write { "NEW" } else { "READONLY" };
    let render = |rec: &str, col: &Ident| {
        format!(
            "{pair}('{}', to_jsonb({rec}.{col}) #>> '{{}}')",
            col.as_str()
        )
    };

    let insert_pairs: Vec<String> = m.fields.iter().map(|f| render("NEW", &f.column)).collect();
    let old_pairs: Vec<String> = OLD_SYSTEM_COLUMNS
        .iter()
        .map(|c| Ident::internal(c))
        .chain(m.fields.iter().map(|f| f.column.clone()))
        .map(|c| render("OLD", &c))
        .collect();
    let update_checks: String = m
        .fields
        .iter()
        .map(|f| {
            format!(
                "
        IF NEW.{c} IS DISTINCT FROM OLD.{c} THEN changed := changed || {p}; END IF;",
                c = f.column,
                p = render("NEW", &f.column)
            )
        })
        .collect();
    let array = |items: &[String]| {
        if items.is_empty() {
            "ARRAY[]::text[]".to_owned()
        } else {
            format!("ARRAY[{}]", items.join(", "))
        }
    };
    let insert_array = array(&insert_pairs);
    let old_array = array(&old_pairs);

    // SECURITY DEFINER: the application's role writes the mapped table but need not be granted
    // anything on the trigger log; the pinned search_path keeps that privilege from being borrowed
    // through a look-alike function earlier in the caller's path.
    let logger_body = format!(
        "CREATE OR REPLACE FUNCTION {logger}() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    changed text[] := ARRAY[]::text[];
    v_state varchar(8) := '{base_state}';
    v_id integer;
    v_sfid varchar(18);
    v_old text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_id := NEW.id;
        v_sfid := NEW.sfid;
        changed := {insert_array};
    ELSE
        v_id := OLD.id;
        v_sfid := OLD.sfid;
        v_old := array_to_string({old_array}, ', ');
    END IF;
    IF TG_OP = 'UPDATE' THEN{update_checks}
        IF cardinality(changed) = 0 THEN
            v_state := 'IGNORE';
        END IF;
    ELSIF TG_OP = 'DELETE' AND v_sfid IS NULL AND NOT EXISTS (
        SELECT 1 FROM {log} l WHERE l.table_name = '{t}' AND l.record_id = v_id
        AND l.action = 'INSERT' AND l.state IN ('NEW', 'PENDING')
    ) THEN
        -- Never reached Salesforce and is not about to: nothing to delete there.
        v_state := 'IGNORE';
    END IF;
    INSERT INTO {log} (txid, created_at, updated_at, state, action, table_name, record_id, sfid, old, \"values\")
    VALUES (txid_current(), clock_timestamp(), clock_timestamp(), v_state, TG_OP, '{t}', v_id, v_sfid, v_old,
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE array_to_string(changed, ', ') END);
    IF v_state = 'NEW' THEN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '{s}.{t}');
    END IF;
    RETURN NULL;
END
$fn$",
        s = schema.as_str(),
    );
    // The engine's own writes are filtered in WHEN, so the function is not even called for them.
    let not_engine = "current_setting('driftless.sync', true) IS DISTINCT FROM 'on'";
    let mut out = schema_sql(schema);
    out.push(logger_body);
    out.push(format!(
        "CREATE OR REPLACE TRIGGER {trg} AFTER INSERT OR UPDATE OR DELETE ON {table} \
         FOR EACH ROW WHEN ({not_engine}) EXECUTE FUNCTION {logger}()",
        trg = Ident::internal(&format!("hc_{t}_logtrigger"))
    ));
    let status_trigger = Ident::internal(&format!("hc_{t}_status_trigger"));
    if read_write {
        let changed = if m.fields.is_empty() {
            "false".to_owned()
        } else {
            let cols = |rec: &str| {
                m.fields
                    .iter()
                    .map(|f| format!("{rec}.{}", f.column))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("ROW({}) IS DISTINCT FROM ROW({})", cols("NEW"), cols("OLD"))
        };
        out.push(format!(
            "CREATE OR REPLACE FUNCTION {status}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    -- Only a change that will be sent makes the row PENDING; a no-op update is logged as IGNORE
    -- and nothing would ever clear the flag.
    IF TG_OP = 'INSERT' OR {changed} THEN
        NEW._hc_lastop := 'PENDING';
        NEW._hc_err := NULL;
    END IF;
    RETURN NEW;
END
$fn$"
        ));
        out.push(format!(
            "CREATE OR REPLACE TRIGGER {status_trigger} BEFORE INSERT OR UPDATE ON {table} \
             FOR EACH ROW WHEN ({not_engine}) EXECUTE FUNCTION {status}()"
        ));
    } else {
        out.push(format!(
            "DROP TRIGGER IF EXISTS {status_trigger} ON {table}"
        ));
    }
    out
}

/// Installs (or refreshes) the capture triggers of a mapped table; idempotent. Run inside the
/// migration's transaction so a mapping edit swaps triggers and columns together.
pub async fn install_triggers(
    client: &impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
) -> Result<(), tokio_postgres::Error> {
    for sql in trigger_sql(schema, mapping) {
        client.batch_execute(&sql).await?;
    }
    Ok(())
}
