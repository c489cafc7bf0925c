//! Deterministic, realistic records: the same seed always gives the same org. Values include
//! what breaks naive sync engines: unicode, quotes, commas and newlines inside values, nulls,
//! long text, extreme numbers and dates.

use crate::schema::{FieldDef, FieldType, ObjectDef, F_ID};
use crate::store::Org;
use crate::value::Value;
use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const FIRST: &[&str] = &[
    "Ada",
    "Zoë",
    "José",
    "Émile",
    "Søren",
    "Mārtiņš",
    "Nguyễn",
    "Ólafur",
    "Hana",
    "Kenji",
    "Ming",
    "Olu",
    "Priya",
    "Łukasz",
    "Zoltán",
    "Ana",
    "Chloé",
    "D'Arcy",
    "Jean-Luc",
    "Bjørn",
];
const LAST: &[&str] = &[
    "O'Brien",
    "Müller",
    "García",
    "Smith",
    "Nakamura",
    "Дмитриев",
    "王",
    "Kowalski",
    "Ødegaard",
    "Ng",
    "van der Berg",
    "D\"Souza",
    "Ångström",
    "Smith, Jr.",
    "Lee",
    "Schröder",
    "Dubois",
    "Haddad",
    "Novák",
    "Silva",
];
const COMPANY_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Gringotts",
    "東京",
    "Zürich",
    "Société",
    "\"Quoted\"",
    "Smith, Jones & Co",
];
const SUFFIXES: &[&str] = &[
    "Inc.", "LLC", "GmbH", "S.A.", "Ltd", "K.K.", "AG", "& Sons", "Holdings", "plc",
];
const CITIES: &[&str] = &[
    "São Paulo",
    "Zürich",
    "München",
    "Kraków",
    "Reykjavík",
    "New York",
    "東京",
    "Montréal",
    "Москва",
    "Cape Town",
];
const WORDS: &[&str] = &[
    "renewal",
    "pricing",
    "follow-up",
    "contract",
    "\"urgent\"",
    "escalation",
    "onboarding",
    "invoice,",
    "café",
    "naïve",
    "résumé",
    "🚀",
    "—",
    "support",
    "Q3",
    "budget",
    "déjà vu",
    "O'Reilly",
    "50%",
    "<b>bold</b>",
];

/// Fixed base for generated stamps so the same seed gives identical records on every run.
fn base_stamp() -> i64 {
    NaiveDate::from_ymd_opt(2025, 1, 1)
        .expect("date")
        .and_hms_opt(0, 0, 0)
        .expect("time")
        .and_utc()
        .timestamp()
}

/// Loads `count` generated records of `object` into the org. Parents must be loaded first so
/// lookups point at real records.
pub fn generate(org: &Arc<Org>, object: &str, count: u64, seed: u64) -> Result<u64, String> {
    let idx = org
        .schema
        .object_index(object)
        .ok_or_else(|| format!("dataset: unknown object '{object}'"))?;
    let def = &org.schema.objects[idx];
    if !def.writable {
        return Err(format!(
            "dataset: object '{}' cannot be generated",
            def.name
        ));
    }
    let parents = parent_ranges(org, def);
    let object_salt = def
        .key_prefix
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(b as u64));
    let base = base_stamp();
    // Spread creation over 300 days, in Id order, so windows over SystemModstamp see history.
    let span = 300 * 86_400i64;
    const CHUNK: u64 = 50_000;
    let mut start = 0;
    while start < count {
        let end = (start + CHUNK).min(count);
        let rows: Vec<(Vec<Value>, i64)> = (start..end)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed ^ object_salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93),
                );
                let stamp = base + (i as i64 * span) / count.max(1) as i64;
                (record(def, &parents, i, &mut rng, org), stamp)
            })
            .collect();
        org.load(idx, rows);
        start = end;
    }
    Ok(count)
}

/// Per field: the lookup's target object and its highest sequence so far (0 when the field is no
/// lookup or the target is empty), so generated lookups point at records that exist.
fn parent_ranges(org: &Org, def: &ObjectDef) -> Vec<(usize, u64)> {
    def.fields
        .iter()
        .map(|f| {
            f.reference_to
                .first()
                .and_then(|t| org.schema.object_index(t))
                .map(|t| (t, org.next_seq(t).saturating_sub(1)))
                .unwrap_or((0, 0))
        })
        .collect()
}

fn record(
    def: &ObjectDef,
    parents: &[(usize, u64)],
    i: u64,
    rng: &mut ChaCha8Rng,
    org: &Org,
) -> Vec<Value> {
    def.fields
        .iter()
        .enumerate()
        .map(|(fi, f)| {
            if fi <= crate::schema::F_SYSTEM_MODSTAMP || !f.createable {
                return Value::Null;
            }
            if f.ftype == FieldType::Reference {
                let (target, max_seq) = parents[fi];
                if f.name == "OwnerId" {
                    return Value::text(org.admin_user_id.clone());
                }
                if max_seq == 0 || rng.gen_bool(0.1) {
                    return Value::Null;
                }
                let seq = rng.gen_range(1..=max_seq);
                return Value::text(crate::ids::make(
                    &org.schema.objects[target].key_prefix,
                    seq,
                ));
            }
            value_for(def, f, i, rng)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .enumerate()
        .map(|(fi, v)| if fi == F_ID { Value::Null } else { v })
        .collect()
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

fn sentence(rng: &mut ChaCha8Rng, words: usize) -> String {
    (0..words)
        .map(|_| pick(rng, WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value for one field of the `i`-th generated record.
pub fn value_for(def: &ObjectDef, f: &FieldDef, i: u64, rng: &mut ChaCha8Rng) -> Value {
    let required = f.required_on_create();
    if !required && f.ftype != FieldType::Boolean && rng.gen_bool(0.15) {
        return Value::Null;
    }
    let clip = |s: String| -> Value {
        let max = f.length.max(1) as usize;
        if s.chars().count() > max {
            Value::text(s.chars().take(max).collect::<String>())
        } else {
            Value::text(s)
        }
    };
    match (f.name.as_str(), f.ftype) {
        ("Name", _) if def.name == "Invoice__c" => Value::text(format!("INV-{:07}", i + 1)),
        ("Name", _) | ("Company", _) => clip(format!(
            "{} {} {}",
            pick(rng, COMPANY_WORDS),
            pick(rng, COMPANY_WORDS),
            pick(rng, SUFFIXES)
        )),
        ("External_Id__c", _) => Value::text(format!("EXT-{:08}", i + 1)),
        // Any other unique or External ID field (a loaded org's): distinct per record.
        (_, t) if f.unique || f.external_id => unique_value(def, f, t, i),
        ("FirstName", _) => Value::text(pick(rng, FIRST)),
        ("LastName", _) => Value::text(pick(rng, LAST)),
        (_, FieldType::String) if f.name.contains("City") => Value::text(pick(rng, CITIES)),
        (_, FieldType::Textarea) if f.length > 255 => {
            // Mostly short, sometimes paragraphs with newlines, rarely the full allowed length.
            let roll = rng.gen_range(0..10_000);
            if roll == 0 {
                let unit = "Long text ünïcödé, \"quoted\"\n";
                let s: String = unit.chars().cycle().take(f.length as usize).collect();
                Value::text(s)
            } else if roll < 2_000 {
                let lines = rng.gen_range(1..4);
                clip(
                    (0..lines)
                        .map(|_| sentence(rng, 8))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            } else {
                {
                    let n = rng.gen_range(2..10);
                    clip(sentence(rng, n))
                }
            }
        }
        (_, FieldType::Textarea) => clip(format!(
            "{} Main St.\nSuite {}, Floor \"{}\"",
            rng.gen_range(1..9999),
            rng.gen_range(1..500),
            rng.gen_range(1..40)
        )),
        (_, FieldType::String) => {
            let n = rng.gen_range(1..4);
            clip(sentence(rng, n))
        }
        (_, FieldType::Picklist) => Value::text(pick_owned(rng, &f.picklist_values)),
        (_, FieldType::Multipicklist) => {
            let n = rng.gen_range(1..=2.min(f.picklist_values.len()));
            let mut vals: Vec<&str> = (0..n)
                .map(|_| f.picklist_values[rng.gen_range(0..f.picklist_values.len())].as_str())
                .collect();
            vals.sort();
            vals.dedup();
            Value::text(vals.join(";"))
        }
        (_, FieldType::Boolean) => Value::Bool(rng.gen_bool(0.3)),
        (_, FieldType::Int) => Value::Int(match rng.gen_range(0..100) {
            0 => i32::MAX as i64,
            1 => 0,
            _ => rng.gen_range(1..250_000),
        }),
        (_, FieldType::Currency) => Value::Double(match rng.gen_range(0..100) {
            0 => 999_999_999_999_999.9,
            1 => -12_345.67,
            _ => (rng.gen_range(0..100_000_000) as f64) / 100.0,
        }),
        (_, FieldType::Percent) => Value::Double(rng.gen_range(0..=100) as f64),
        (_, FieldType::Double) => Value::Double(match rng.gen_range(0..100) {
            0 => 1.0e15,
            1 => -0.5,
            _ => rng.gen_range(0..10_000) as f64,
        }),
        (_, FieldType::Date) => {
            let days = match rng.gen_range(0..100) {
                0 => -25_567, // 1900-01-01
                1 => 47_482,  // 2099-12-31
                _ => rng.gen_range(0..20_000),
            };
            Value::Date(
                NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
                    + chrono::Days::new(0)
                    + chrono::Duration::days(days),
            )
        }
        (_, FieldType::Datetime) => Value::DateTime(base_stamp() - rng.gen_range(0..400 * 86_400)),
        (_, FieldType::Email) => {
            Value::text(format!("user{}.{}@example.com", i, rng.gen_range(0..1000)))
        }
        (_, FieldType::Phone) => Value::text(format!(
            "+1 ({}) 555-{:04}",
            rng.gen_range(200..999),
            rng.gen_range(0..10_000)
        )),
        (_, FieldType::Url) => Value::text(format!("https://www.example.com/{}?a=1&b=2", i)),
        (_, FieldType::Id | FieldType::Reference) => Value::Null,
    }
}

/// The `i`-th record's value of a unique field, within its length.
fn unique_value(def: &ObjectDef, f: &FieldDef, t: FieldType, i: u64) -> Value {
    match t {
        FieldType::Int => Value::Int((i as i64 + 1) % i32::MAX as i64),
        FieldType::Double | FieldType::Currency | FieldType::Percent => {
            Value::Double((i + 1) as f64)
        }
        FieldType::Email => Value::text(format!("unique{}@example.com", i + 1)),
        _ => {
            let code = format!("{}-{:08}", def.key_prefix, i + 1);
            // A short field keeps the distinct end of the code.
            let skip = code.len().saturating_sub(f.length.max(1) as usize);
            Value::text(&code[skip..])
        }
    }
}

fn pick_owned(rng: &mut ChaCha8Rng, list: &[String]) -> String {
    list[rng.gen_range(0..list.len())].clone()
}

/// Loads a dataset spec in an order where every lookup target comes before the objects that
/// point at it.
pub fn generate_all(org: &Arc<Org>, spec: &[(String, u64)], seed: u64) -> Result<(), String> {
    for (object, count) in load_order(org, spec) {
        generate(org, object, *count, seed)?;
    }
    Ok(())
}

/// The spec in an order where lookup targets come first (Account before Contact before Case, a
/// loaded org's parents before their children); the spec's order breaks ties and cycles.
fn load_order<'a>(org: &Org, spec: &'a [(String, u64)]) -> Vec<&'a (String, u64)> {
    let targets = |name: &str| -> Vec<String> {
        org.schema
            .object(name)
            .map(|d| {
                d.fields
                    .iter()
                    .skip(crate::schema::F_SYSTEM_MODSTAMP + 1)
                    .flat_map(|f| f.reference_to.iter())
                    .filter(|t| !t.eq_ignore_ascii_case(name))
                    .map(|t| t.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut left: Vec<&(String, u64)> = spec.iter().collect();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let pending: Vec<String> = left.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        let ready = left
            .iter()
            .position(|(n, _)| {
                let me = n.to_ascii_lowercase();
                targets(n).iter().all(|t| *t == me || !pending.contains(t))
            })
            .unwrap_or(0);
        out.push(left.remove(ready));
    }
    out
}

/// Values for a new record created by the workload: every createable field the generator fills,
/// with lookups to existing parents.
pub fn new_record(org: &Org, object: usize, rng: &mut ChaCha8Rng) -> Vec<(usize, Value)> {
    let def = &org.schema.objects[object];
    let parents = parent_ranges(org, def);
    let i = org.next_seq(object) + rng.gen_range(0..1_000_000_000u64) * 1_000_000;
    record(def, &parents, i, rng, org)
        .into_iter()
        .enumerate()
        .filter(|(fi, v)| !v.is_null() && def.fields[*fi].createable)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use crate::store::{is_deleted, record_id};

    fn snapshot(org: &Org, object: &str) -> Vec<Vec<Value>> {
        let idx = org.schema.object_index(object).unwrap();
        org.read(|t| t[idx].iter().map(|r| r.to_vec()).collect())
    }

    #[test]
    fn same_seed_same_records_and_lookups_resolve() {
        let a = Org::new(Schema::standard());
        let b = Org::new(Schema::standard());
        let spec = vec![
            ("Contact".to_string(), 300),
            ("Account".to_string(), 100),
            ("Invoice__c".to_string(), 50),
        ];
        generate_all(&a, &spec, 7).unwrap();
        generate_all(&b, &spec, 7).unwrap();
        assert_eq!(snapshot(&a, "Account"), snapshot(&b, "Account"));
        assert_eq!(snapshot(&a, "Contact"), snapshot(&b, "Contact"));
        let c = Org::new(Schema::standard());
        generate_all(&c, &spec, 8).unwrap();
        assert_ne!(snapshot(&a, "Account"), snapshot(&c, "Account"));

        let acct = a.schema.object_index("Account").unwrap();
        let contact = a.schema.object_index("Contact").unwrap();
        let fk = a.schema.objects[contact].field_index("AccountId").unwrap();
        let contacts = snapshot(&a, "Contact");
        assert_eq!(contacts.len(), 300);
        for row in &contacts {
            if let Value::Text(id) = &row[fk] {
                assert!(
                    a.get_by_id(acct, id).is_some_and(|r| !is_deleted(&r)),
                    "{id}"
                );
            }
        }
        let accounts = a.read(|t| {
            t[acct]
                .iter()
                .map(|r| record_id(r).to_string())
                .collect::<Vec<_>>()
        });
        let mut sorted = accounts.clone();
        sorted.sort();
        assert_eq!(accounts, sorted, "ids ascend in creation order");
    }

    #[test]
    fn sync_objects_generate_with_lookups_to_accounts() {
        let org = Org::new(Schema::standard());
        let spec = vec![("Sync07__c".to_string(), 500), ("Account".to_string(), 50)];
        generate_all(&org, &spec, 3).unwrap();
        let rows = snapshot(&org, "Sync07__c");
        assert_eq!(rows.len(), 500);
        let def = org.schema.object("Sync07__c").unwrap();
        let name = def.field_index("Name").unwrap();
        let fk = def.field_index("Account__c").unwrap();
        assert!(rows.iter().all(|r| !r[name].is_null()));
        let acct = org.schema.object_index("Account").unwrap();
        let linked = rows
            .iter()
            .filter_map(|r| r[fk].as_str())
            .inspect(|id| assert!(org.get_by_id(acct, id).is_some(), "{id}"))
            .count();
        assert!(linked > 300, "most point at an Account: {linked}");
        assert!(rows
            .iter()
            .all(|r| r[F_ID].as_str().is_some_and(|id| id.starts_with("a07"))));
    }

    #[test]
    fn values_are_realistic_and_valid() {
        let org = Org::new(Schema::standard());
        generate_all(&org, &[("Account".to_string(), 2000)], 1).unwrap();
        let rows = snapshot(&org, "Account");
        let def = org.schema.object("Account").unwrap();
        let name = def.field_index("Name").unwrap();
        assert!(
            rows.iter().all(|r| !r[name].is_null()),
            "required Name always set"
        );
        let texts: Vec<&str> = rows
            .iter()
            .flat_map(|r| r.iter().filter_map(Value::as_str))
            .collect();
        assert!(texts.iter().any(|s| s.contains('\n')));
        assert!(texts.iter().any(|s| s.contains('"')));
        assert!(texts.iter().any(|s| s.contains(',')));
        assert!(texts.iter().any(|s| !s.is_ascii()));
        assert!(rows.iter().any(|r| r.iter().any(Value::is_null)));
        for r in &rows {
            for (f, v) in def.fields.iter().zip(r.iter()) {
                if let Value::Text(s) = v {
                    assert!(
                        s.chars().count() as u32 <= f.length.max(18),
                        "{} too long",
                        f.name
                    );
                }
            }
        }
    }
}
