//! Calculated (formula) fields. Their values live in the records like any other field, so every
//! reader (SOQL filters, REST, Bulk, exports, the ground truth) sees them without knowing they
//! are computed; the store recomputes them inside the commit that changes what they read. A
//! record's own write recomputes its formulas; a parent's write recomputes its children's
//! through a reverse index of the lookups formulas follow, giving the children new versions with
//! their SystemModstamp untouched and no change event, as on Salesforce. `TODAY()` and `NOW()`
//! read the simulator's clock (`POST /_sim/clock` moves it); time-dependent formulas are
//! recomputed when that clock moves and when its date changes.

use super::{is_deleted, Record, Table};
use crate::ids;
use crate::schema::{FieldType, Schema};
use crate::value::Value;
use chrono::{DateTime, TimeZone, Utc};
use formula::{Env, FieldPath, Fields, Formula, Value as FValue};
use std::collections::{HashMap, HashSet};

/// Children pointing at each parent through one lookup field: parent seq → child seqs.
pub type Referrers = HashMap<usize, HashMap<u64, Vec<u64>>>;

/// A recompute that feeds another (a formula reading a parent's formula) stops after this many
/// rounds, well past the two hops a reference may take.
const MAX_ROUNDS: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Hop {
    /// The lookup field on the record the hop starts from.
    lookup: usize,
    target: usize,
}

struct Path {
    path: FieldPath,
    hops: Vec<Hop>,
    field: usize,
}

struct Calc {
    field: usize,
    ftype: FieldType,
    formula: Formula,
    paths: Vec<Path>,
    time_dependent: bool,
}

/// Records of `child` to recompute when a record of the watched object changes: walk `back`
/// from the changed record, each step (object, lookup field) finding the records of `object`
/// whose lookup points at the previous step's records.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Watch {
    child: usize,
    back: Vec<(usize, usize)>,
}

pub struct Formulas {
    by_object: Vec<Vec<Calc>>,
    watchers: Vec<Vec<Watch>>,
    /// Per object, the lookup fields formulas follow from it: the store indexes their referrers.
    followed: Vec<Vec<usize>>,
}

impl Formulas {
    /// Compiles every calculated field's formula against the schema. A formula outside the
    /// supported subset, or one naming a field or relationship the object lacks, is left out
    /// with a warning: its field reads null, as nothing could compute it.
    pub fn new(schema: &Schema) -> Formulas {
        let n = schema.objects.len();
        let mut out = Formulas {
            by_object: (0..n).map(|_| Vec::new()).collect(),
            watchers: vec![Vec::new(); n],
            followed: vec![Vec::new(); n],
        };
        for (oi, def) in schema.objects.iter().enumerate() {
            for (fi, f) in def.fields.iter().enumerate() {
                let Some(text) = f.calculated_formula.as_deref().filter(|_| f.calculated) else {
                    continue;
                };
                match compile(schema, oi, fi, text) {
                    Ok(calc) => out.add(oi, calc),
                    Err(e) => tracing::warn!(
                        object = %def.name,
                        field = %f.name,
                        "formula left uncomputed (the field reads null): {e}"
                    ),
                }
            }
        }
        out
    }

    fn add(&mut self, object: usize, calc: Calc) {
        for p in &calc.paths {
            let mut from = object;
            let mut chain: Vec<(usize, usize)> = Vec::new();
            for hop in &p.hops {
                if !self.followed[from].contains(&hop.lookup) {
                    self.followed[from].push(hop.lookup);
                }
                chain.insert(0, (from, hop.lookup));
                let watch = Watch {
                    child: object,
                    back: chain.clone(),
                };
                if !self.watchers[hop.target].contains(&watch) {
                    self.watchers[hop.target].push(watch);
                }
                from = hop.target;
            }
        }
        self.by_object[object].push(calc);
    }

    pub fn has_any(&self, object: usize) -> bool {
        !self.by_object[object].is_empty()
    }

    /// Sets the object's formula fields in `row` from `tables`; true when any value changed.
    pub fn compute(
        &self,
        object: usize,
        row: &mut [Value],
        tables: &[Table],
        now: DateTime<Utc>,
    ) -> bool {
        let mut changed = false;
        for calc in &self.by_object[object] {
            let value = {
                let fields = RowFields {
                    row,
                    tables,
                    paths: &calc.paths,
                };
                let env = Env {
                    fields: &fields,
                    now,
                };
                calc.formula
                    .eval(&env)
                    .map(|v| stored(v, calc.ftype))
                    .unwrap_or(Value::Null)
            };
            if row[calc.field] != value {
                row[calc.field] = value;
                changed = true;
            }
        }
        changed
    }

    /// Keeps the referrer index of the lookups formulas follow in step with a record's new
    /// version (`old` is the version it replaces).
    pub fn index(
        &self,
        object: usize,
        seq: u64,
        old: Option<&Record>,
        new: &[Value],
        table: &mut Table,
    ) {
        for &lookup in &self.followed[object] {
            let before = old.and_then(|r| parent_seq(&r[lookup]));
            let after = parent_seq(&new[lookup]);
            if before == after {
                continue;
            }
            let by_parent = table.referrers.entry(lookup).or_default();
            if let Some(p) = before {
                if let Some(children) = by_parent.get_mut(&p) {
                    children.retain(|c| *c != seq);
                }
            }
            if let Some(p) = after {
                by_parent.entry(p).or_default().push(seq);
            }
        }
    }

    /// Recomputes the formulas of every record that reads one of `changed` through a lookup.
    /// The new versions keep their SystemModstamp and are told to no observer.
    pub fn propagate(&self, changed: Vec<(usize, u64)>, tables: &mut [Table], now: DateTime<Utc>) {
        let mut round = changed;
        for _ in 0..MAX_ROUNDS {
            let affected = self.dependents(&round, tables);
            if affected.is_empty() {
                return;
            }
            round = self.recompute(affected, tables, now);
            if round.is_empty() {
                return;
            }
        }
    }

    fn dependents(&self, changed: &[(usize, u64)], tables: &[Table]) -> Vec<(usize, u64)> {
        let mut seen: HashSet<(usize, u64)> = HashSet::new();
        let mut out = Vec::new();
        for &(object, seq) in changed {
            for watch in &self.watchers[object] {
                let mut at: Vec<u64> = vec![seq];
                for &(holder, lookup) in &watch.back {
                    let Some(by_parent) = tables[holder].referrers.get(&lookup) else {
                        at.clear();
                        break;
                    };
                    at = at
                        .iter()
                        .filter_map(|p| by_parent.get(p))
                        .flatten()
                        .copied()
                        .collect();
                }
                for s in at {
                    if seen.insert((watch.child, s)) {
                        out.push((watch.child, s));
                    }
                }
            }
        }
        out
    }

    /// New versions for the records whose formula values differ now; returns those records.
    fn recompute(
        &self,
        records: Vec<(usize, u64)>,
        tables: &mut [Table],
        now: DateTime<Utc>,
    ) -> Vec<(usize, u64)> {
        let mut updates: Vec<(usize, u64, Record)> = Vec::new();
        for (object, seq) in records {
            let Some(current) = tables[object].get(seq) else {
                continue;
            };
            let mut row = current.to_vec();
            if self.compute(object, &mut row, tables, now) {
                updates.push((object, seq, Record::from(row)));
            }
        }
        let done = updates.iter().map(|(o, s, _)| (*o, *s)).collect();
        for (object, seq, rec) in updates {
            tables[object].rows[seq as usize - 1] = Some(rec);
        }
        done
    }

    /// Recomputes every record whose formulas use `TODAY()` or `NOW()`, then what reads them.
    pub fn refresh_time_dependent(&self, tables: &mut [Table], now: DateTime<Utc>) -> usize {
        let mut records = Vec::new();
        for (object, calcs) in self.by_object.iter().enumerate() {
            if calcs.iter().any(|c| c.time_dependent) {
                records.extend(
                    tables[object]
                        .rows
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.is_some())
                        .map(|(i, _)| (object, i as u64 + 1)),
                );
            }
        }
        let changed = self.recompute(records, tables, now);
        let n = changed.len();
        self.propagate(changed, tables, now);
        n
    }
}

fn parent_seq(v: &Value) -> Option<u64> {
    ids::parse(v.as_str()?).map(|(_, seq)| seq)
}

fn compile(schema: &Schema, object: usize, field: usize, text: &str) -> Result<Calc, String> {
    let formula = Formula::parse(text).map_err(|e| e.to_string())?;
    let mut paths = Vec::new();
    for path in formula.references() {
        let mut current = object;
        let mut hops = Vec::new();
        for rel in path.relationships() {
            let def = &schema.objects[current];
            let (lookup, f) = def
                .relationship(rel)
                .ok_or_else(|| format!("{} has no relationship {rel}", def.name))?;
            let [to] = f.reference_to.as_slice() else {
                return Err(format!("{}.{} is polymorphic", def.name, f.name));
            };
            let target = schema
                .object_index(to)
                .ok_or_else(|| format!("{}.{} points at unknown {to}", def.name, f.name))?;
            hops.push(Hop { lookup, target });
            current = target;
        }
        let def = &schema.objects[current];
        let at = def
            .field_index(path.field())
            .ok_or_else(|| format!("{} has no field {}", def.name, path.field()))?;
        paths.push(Path {
            path,
            hops,
            field: at,
        });
    }
    let def = &schema.objects[object].fields[field];
    Ok(Calc {
        field,
        ftype: def.ftype,
        time_dependent: formula.is_time_dependent(),
        formula,
        paths,
    })
}

struct RowFields<'a> {
    row: &'a [Value],
    tables: &'a [Table],
    paths: &'a [Path],
}

impl Fields for RowFields<'_> {
    fn field(&self, path: &FieldPath) -> FValue {
        let Some(p) = self.paths.iter().find(|p| p.path.eq_ignore_case(path)) else {
            return FValue::Null;
        };
        let mut parent: Option<&Record> = None;
        for hop in &p.hops {
            let from: &[Value] = parent.map_or(self.row, |r| r);
            let Some(seq) = parent_seq(&from[hop.lookup]) else {
                return FValue::Null;
            };
            // A deleted parent reads as empty, as a cleared lookup does.
            match self.tables[hop.target].get(seq).filter(|r| !is_deleted(r)) {
                Some(r) => parent = Some(r),
                None => return FValue::Null,
            }
        }
        let from: &[Value] = parent.map_or(self.row, |r| r);
        formula_value(&from[p.field])
    }
}

fn formula_value(v: &Value) -> FValue {
    match v {
        Value::Null => FValue::Null,
        Value::Bool(b) => FValue::Bool(*b),
        Value::Int(i) => FValue::Number(*i as f64),
        Value::Double(d) => FValue::Number(*d),
        Value::Text(s) => FValue::Text(s.to_string()),
        Value::Date(d) => FValue::Date(*d),
        Value::DateTime(t) => Utc
            .timestamp_opt(*t, 0)
            .single()
            .map_or(FValue::Null, FValue::DateTime),
    }
}

/// A formula's result as the field's type stores it; what does not fit reads blank.
fn stored(v: FValue, ftype: FieldType) -> Value {
    if v.is_blank() {
        return if ftype == FieldType::Boolean {
            Value::Bool(false)
        } else {
            Value::Null
        };
    }
    match (ftype, v) {
        (FieldType::Boolean, FValue::Bool(b)) => Value::Bool(b),
        (FieldType::Int, FValue::Number(n)) => Value::Int(n.round() as i64),
        (FieldType::Double | FieldType::Currency | FieldType::Percent, FValue::Number(n)) => {
            Value::Double(n)
        }
        (FieldType::Date, FValue::Date(d)) => Value::Date(d),
        (FieldType::Date, FValue::DateTime(t)) => Value::Date(t.date_naive()),
        (FieldType::Datetime, FValue::DateTime(t)) => Value::DateTime(t.timestamp()),
        (t, v) if t.is_textual() => Value::text(v.to_text()),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::Schema;
    use crate::store::{
        input, system_modstamp, ChangeKind, CommitObserver, CommittedChange, Org, Txn,
    };
    use crate::value::Value;
    use std::sync::{Arc, Mutex};

    fn set(org: &Org, object: &str, values: &[(&str, Value)]) -> (usize, Vec<(usize, Value)>) {
        let o = org.schema.object_index(object).unwrap();
        let def = &org.schema.objects[o];
        let v = values
            .iter()
            .map(|(n, v)| (def.field_index(n).unwrap(), v.clone()))
            .collect();
        (o, v)
    }

    fn create(org: &Org, object: &str, values: &[(&str, Value)]) -> String {
        let (o, v) = set(org, object, values);
        let mut txn = org.begin();
        let id = org.create(&mut txn, o, v).unwrap();
        org.commit(txn);
        id
    }

    fn update(org: &Org, object: &str, id: &str, values: &[(&str, Value)]) {
        let (o, v) = set(org, object, values);
        let mut txn = org.begin();
        org.update(&mut txn, o, id, v).unwrap();
        org.commit(txn);
    }

    fn field(org: &Org, object: &str, id: &str, name: &str) -> Value {
        let o = org.schema.object_index(object).unwrap();
        let i = org.schema.objects[o].field_index(name).unwrap();
        org.get_by_id(o, id).unwrap()[i].clone()
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<(usize, ChangeKind)>>);

    impl CommitObserver for Seen {
        fn committed(&self, _: &Schema, _: &Txn, changes: Vec<CommittedChange>) {
            let mut seen = self.0.lock().unwrap();
            seen.extend(changes.iter().map(|c| (c.object, c.kind)));
        }
    }

    #[test]
    fn a_parent_change_changes_its_childrens_formulas_without_a_stamp_or_an_event() {
        let org = Org::new(Schema::standard());
        let acme = create(
            &org,
            "Account",
            &[
                ("Name", Value::text("Acme")),
                ("Industry", Value::text("Energy")),
            ],
        );
        let other = create(&org, "Account", &[("Name", Value::text("Other"))]);
        let c1 = create(
            &org,
            "Contact",
            &[
                ("LastName", Value::text("One")),
                ("AccountId", Value::text(acme.clone())),
            ],
        );
        let c2 = create(
            &org,
            "Contact",
            &[
                ("LastName", Value::text("Two")),
                ("AccountId", Value::text(other.clone())),
            ],
        );
        assert_eq!(
            field(&org, "Contact", &c1, "Account_Summary__c"),
            Value::text("Acme / Energy")
        );
        assert_eq!(
            field(&org, "Contact", &c2, "Account_Summary__c"),
            Value::text("Other / ")
        );
        let contact = org.schema.object_index("Contact").unwrap();
        let stamp = system_modstamp(&org.get_by_id(contact, &c1).unwrap());
        let seen = Arc::new(Seen::default());
        org.set_commit_observer(seen.clone());

        std::thread::sleep(std::time::Duration::from_millis(1100));
        update(&org, "Account", &acme, &[("Name", Value::text("Acme Two"))]);
        assert_eq!(
            field(&org, "Contact", &c1, "Account_Summary__c"),
            Value::text("Acme Two / Energy")
        );
        assert_eq!(
            system_modstamp(&org.get_by_id(contact, &c1).unwrap()),
            stamp
        );
        assert_eq!(
            field(&org, "Contact", &c2, "Account_Summary__c"),
            Value::text("Other / ")
        );
        let account = org.schema.object_index("Account").unwrap();
        assert_eq!(*seen.0.lock().unwrap(), vec![(account, ChangeKind::Update)]);

        // Moving the child to another parent is the child's own change: it reads the new one.
        update(
            &org,
            "Contact",
            &c1,
            &[("AccountId", Value::text(other.clone()))],
        );
        update(
            &org,
            "Account",
            &acme,
            &[("Name", Value::text("Acme Three"))],
        );
        assert_eq!(
            field(&org, "Contact", &c1, "Account_Summary__c"),
            Value::text("Other / ")
        );
        update(
            &org,
            "Account",
            &other,
            &[("Industry", Value::text("Media"))],
        );
        assert_eq!(
            field(&org, "Contact", &c1, "Account_Summary__c"),
            Value::text("Other / Media")
        );
        assert_eq!(
            field(&org, "Contact", &c2, "Account_Summary__c"),
            Value::text("Other / Media")
        );
    }

    #[test]
    fn today_reads_the_simulators_clock_and_moving_it_recomputes() {
        let org = Org::new(Schema::standard());
        let close = chrono::Utc::now().date_naive() + chrono::Duration::days(10);
        let opp = create(
            &org,
            "Opportunity",
            &[
                ("Name", Value::text("Deal")),
                ("StageName", Value::text("Prospecting")),
                ("CloseDate", Value::Date(close)),
            ],
        );
        assert_eq!(
            field(&org, "Opportunity", &opp, "Days_To_Close__c"),
            Value::Double(10.0)
        );
        assert_eq!(org.set_clock_offset(86_400), 1);
        assert_eq!(
            field(&org, "Opportunity", &opp, "Days_To_Close__c"),
            Value::Double(9.0)
        );
        assert_eq!(org.refresh_formulas_if_day_changed(), 0);
    }

    #[test]
    fn formula_fields_are_described_and_cannot_be_written() {
        let schema = Schema::standard();
        let contact = schema.object("Contact").unwrap();
        let f = contact.field("Account_Summary__c").unwrap();
        let d = f.describe();
        assert_eq!(d["calculated"], true);
        assert_eq!(
            d["calculatedFormula"],
            "Account.Name & ' / ' & TEXT(Account.Industry)"
        );
        assert_eq!(d["createable"], false);
        assert_eq!(d["updateable"], false);
        for creating in [true, false] {
            let e = input::writable_field(contact, "Account_Summary__c", creating).unwrap_err();
            assert_eq!(e.code, "INVALID_FIELD_FOR_INSERT_UPDATE");
        }
    }

    #[test]
    fn an_unsupported_formula_reads_null_and_compiles_nothing() {
        let mut schema = Schema::standard();
        let contact = schema.object_index("Contact").unwrap();
        let f = schema.objects[contact]
            .fields
            .iter_mut()
            .find(|f| f.name == "Account_Summary__c")
            .unwrap();
        f.calculated_formula = Some("VLOOKUP(1, 2, 3)".into());
        let org = Org::new(schema);
        let acme = create(&org, "Account", &[("Name", Value::text("Acme"))]);
        let c = create(
            &org,
            "Contact",
            &[
                ("LastName", Value::text("One")),
                ("AccountId", Value::text(acme)),
            ],
        );
        assert_eq!(
            field(&org, "Contact", &c, "Account_Summary__c"),
            Value::Null
        );
        assert!(!org.formulas.has_any(contact));
    }
}
