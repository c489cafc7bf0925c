//! Awkward values round-trip exactly, through REST and through Bulk: unicode, quotes, commas,
//! newlines, a 131,072-character long text area, nulls, extreme numbers and far dates. Records are
//! created straight in the simulator's org (so nothing in between normalises them), some before
//! the initial load and some after it (read by primary polls), then every Postgres column is
//! compared with the simulator's value, and verify must report 0 differences.

use driftless_testkit as common;

use std::time::Duration;

use chrono::NaiveDate;
use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};
use sfsim::value::Value;

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Invoice__c","config":{"access":"read_only","sf_polling_seconds":1,"sf_notify_enabled":false,
    "sf_max_daily_api_calls":30000,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"External_Id__c":{},"Amount__c":{},
              "Tax_Rate__c":{},"Quantity__c":{},"Line_Count__c":{},"Issued_Date__c":{},"Paid__c":{},
              "Contact_Email__c":{},"Notes__c":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
],"version":1}"#;

const TEXT_FIELDS: [&str; 4] = ["Name", "External_Id__c", "Contact_Email__c", "Notes__c"];
const DOUBLE_FIELDS: [&str; 3] = ["Amount__c", "Tax_Rate__c", "Quantity__c"];

/// 131,072 characters (the field's length) mixing every character CSV and JSON must escape,
/// multi-byte ones included.
fn longest_notes() -> String {
    let unit = "a,b \"q\" 'é'\n\r\n\t\\ 日本 🚀;|";
    let mut s: String = unit.chars().cycle().take(131_072).collect();
    // End on something a trimming parser would lose.
    s.pop();
    s.push(' ');
    assert_eq!(s.chars().count(), 131_072);
    s
}

fn d(y: i32, m: u32, day: u32) -> Value {
    Value::Date(NaiveDate::from_ymd_opt(y, m, day).unwrap())
}

/// (field, value) rows; everything not given is null.
fn bad_records(tag: &str) -> Vec<Vec<(&'static str, Value)>> {
    fn t(s: impl Into<String>) -> Value {
        Value::text(s)
    }
    vec![
        vec![
            ("Name", t("Zoë Ωμέγα 日本語 🚀 עברית")),
            (
                "Notes__c",
                t("emoji 👍🏽 with ZWJ 👩‍👩‍👧, combining e\u{301}, BOM \u{feff}"),
            ),
            ("Contact_Email__c", t("zoë@example.com")),
        ],
        vec![
            ("Name", t("He said \"hi\", then left")),
            (
                "Notes__c",
                t("line1\nline2\r\nline3, \"quoted\", 'single'\ttab \\backslash \"\""),
            ),
        ],
        vec![("Name", t("longest")), ("Notes__c", t(longest_notes()))],
        // Only the required Name: every other column null.
        vec![("Name", t("all nulls"))],
        vec![
            ("Name", t("big")),
            ("Amount__c", Value::Double(999_999_999_999_999.9)),
            ("Tax_Rate__c", Value::Double(-0.5)),
            ("Quantity__c", Value::Double(1e-7)),
            ("Line_Count__c", Value::Int(i32::MAX as i64)),
            ("Paid__c", Value::Bool(true)),
        ],
        vec![
            ("Name", t("small")),
            ("Amount__c", Value::Double(-999_999_999_999_999.9)),
            ("Tax_Rate__c", Value::Double(0.1 + 0.2)),
            ("Quantity__c", Value::Double(0.0)),
            ("Line_Count__c", Value::Int(i32::MIN as i64)),
            ("Paid__c", Value::Bool(false)),
        ],
        vec![
            ("Name", t("1900")),
            ("Issued_Date__c", d(1900, 1, 1)),
            ("Notes__c", t("NULL")),
        ],
        vec![
            ("Name", t("2099")),
            ("Issued_Date__c", d(2099, 12, 31)),
            ("Notes__c", t("  leading and trailing spaces  ")),
        ],
        vec![
            ("Name", t(",")),
            ("Notes__c", t("\"")),
            ("External_Id__c", t("")),
        ],
    ]
    .into_iter()
    .enumerate()
    .map(|(i, mut r)| {
        // A unique external id per record, unless the record tests an empty one.
        if !r.iter().any(|(f, _)| *f == "External_Id__c") {
            r.push(("External_Id__c", Value::text(format!("{tag}-{i},\"x\""))));
        }
        r
    })
    .collect()
}

/// Creates the records in one transaction; answers their Ids.
fn create(sim: &SimThread, tag: &str) -> Vec<String> {
    let org = &sim.org;
    let obj = org.object_index("Invoice__c").unwrap();
    let def = &org.schema.objects[obj];
    let mut txn = org.begin();
    let ids = bad_records(tag)
        .into_iter()
        .map(|fields| {
            let values = fields
                .into_iter()
                .filter(|(_, v)| !matches!(v, Value::Text(s) if s.is_empty()))
                .map(|(f, v)| (def.field_index(f).unwrap(), v))
                .collect();
            org.create(&mut txn, obj, values).expect("create")
        })
        .collect();
    org.commit(txn);
    ids
}

/// Compares every mapped column of every record with the simulator's value, exactly.
async fn compare(sim: &SimThread, pg: &tokio_postgres::Client, ids: &[String]) -> usize {
    let org = &sim.org;
    let obj = org.object_index("Invoice__c").unwrap();
    let def = &org.schema.objects[obj];
    let mut compared = 0;
    for id in ids {
        let rec = org.get_by_id(obj, id).expect("record in the simulator");
        let row = pg
            .query_one(
                "SELECT name, external_id__c, contact_email__c, notes__c, amount__c, tax_rate__c, \
                 quantity__c, line_count__c, issued_date__c, paid__c \
                 FROM salesforce.invoice__c WHERE sfid = $1",
                &[id],
            )
            .await
            .unwrap_or_else(|e| panic!("{id} in Postgres: {e}"));
        let sf = |f: &str| &rec[def.field_index(f).unwrap()];
        for (i, f) in TEXT_FIELDS.iter().enumerate() {
            let want = match sf(f) {
                Value::Null => None,
                Value::Text(s) => Some(s.to_string()),
                v => panic!("{f}: {v:?}"),
            };
            assert_eq!(row.get::<_, Option<String>>(i), want, "{id} {f}");
            compared += 1;
        }
        for (i, f) in DOUBLE_FIELDS.iter().enumerate() {
            let want = match sf(f) {
                Value::Null => None,
                Value::Double(x) => Some(*x),
                v => panic!("{f}: {v:?}"),
            };
            let have = row.get::<_, Option<f64>>(4 + i);
            // Bit for bit: -0.0 and 0.0 or a last-digit rounding would both show.
            assert_eq!(
                have.map(f64::to_bits),
                want.map(f64::to_bits),
                "{id} {f}: {have:?} vs {want:?}"
            );
            compared += 1;
        }
        let want = match sf("Line_Count__c") {
            Value::Null => None,
            Value::Int(n) => Some(i32::try_from(*n).unwrap()),
            v => panic!("{v:?}"),
        };
        assert_eq!(row.get::<_, Option<i32>>(7), want, "{id} Line_Count__c");
        let want = match sf("Issued_Date__c") {
            Value::Null => None,
            Value::Date(d) => Some(*d),
            v => panic!("{v:?}"),
        };
        assert_eq!(
            row.get::<_, Option<NaiveDate>>(8),
            want,
            "{id} Issued_Date__c"
        );
        let want = match sf("Paid__c") {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            v => panic!("{v:?}"),
        };
        assert_eq!(row.get::<_, Option<bool>>(9), want, "{id} Paid__c");
        compared += 3;
    }
    compared
}

async fn round_trip(bulk_threshold: u64) {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig::default()).await;
    let setup = Setup {
        faults: false,
        bulk_threshold,
        secondary_enabled: false,
        db_pool_size: 2,
    };
    let config = write_config_with(&db, &sim.info, &setup, MAPPINGS);
    let mut ids = create(&sim, "load");
    let engine = run(
        config.clone(),
        RunOptions {
            honor_latest_date_covered: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    let pg = db.client().await;
    let count = || async {
        pg.query_one("SELECT count(*) FROM salesforce.invoice__c", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    wait_until("initial load", Duration::from_secs(60), || async {
        engine
            .status()
            .await
            .mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
    assert_eq!(count().await, ids.len() as i64);
    // The same values again, now read by primary polls.
    ids.extend(create(&sim, "poll"));
    wait_until("incremental sync", Duration::from_secs(60), || async {
        count().await == ids.len() as i64
    })
    .await;
    let compared = compare(&sim, &pg, &ids).await;
    let kinds: Vec<(String, i64)> = pg
        .query(
            "SELECT kind, count(*) FROM salesforce._driftless_windows GROUP BY kind ORDER BY kind",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let reports = verify(
        &config,
        &VerifyOptions {
            max_listed: 20,
            batch_rows: 1000,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify");
    eprintln!(
        "bulk_threshold={bulk_threshold}: {} records, {compared} values equal, windows by kind {kinds:?}, verify {reports:?}",
        ids.len()
    );
    engine.stop().await;
    sim.stop().await;
    assert!(
        reports.iter().all(|r| r.differences() == 0),
        "verify: {reports:?}"
    );
    // The records created after the load were read by the path under test (the initial load's
    // is the same: 9 records against the same threshold).
    let bulk_windows = kinds
        .iter()
        .find(|(k, _)| k == "bulk")
        .map_or(0, |(_, n)| *n);
    if bulk_threshold < 9 {
        assert!(
            bulk_windows >= 1,
            "no primary window read by Bulk: {kinds:?}"
        );
    } else {
        assert_eq!(bulk_windows, 0, "{kinds:?}");
    }
}

#[actix_rt::test]
async fn awkward_values_round_trip_exactly_through_rest() {
    round_trip(1_000_000).await;
}

#[actix_rt::test]
async fn awkward_values_round_trip_exactly_through_bulk() {
    round_trip(1).await;
}
