//! Write transactions: staged, validated when staged, applied atomically at commit with the
//! SystemModstamp of their start.

use super::{is_deleted, now_secs, Org, Record};
use crate::error::SfError;
use crate::ids;
use crate::schema::{
    FieldType, ObjectDef, F_CREATED_BY_ID, F_CREATED_DATE, F_ID, F_IS_DELETED,
    F_LAST_MODIFIED_BY_ID, F_LAST_MODIFIED_DATE, F_SYSTEM_MODSTAMP,
};
use crate::value::Value;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub enum WriteOp {
    Create {
        object: usize,
        seq: u64,
        values: Vec<(usize, Value)>,
    },
    Update {
        object: usize,
        seq: u64,
        values: Vec<(usize, Value)>,
    },
    Delete {
        object: usize,
        seq: u64,
    },
    Undelete {
        object: usize,
        seq: u64,
    },
}

/// What a committed operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    Undelete,
}

/// One record a commit changed: its version before (None for a create) and after.
#[derive(Debug)]
pub struct CommittedChange {
    pub object: usize,
    pub kind: ChangeKind,
    pub before: Option<Record>,
    pub after: Record,
}

/// Told of every commit, in commit order, while the commit still holds the store: Change Data
/// Capture hangs off this. It must not read the store (the commit holds its write lock).
pub trait CommitObserver: Send + Sync {
    fn committed(&self, schema: &crate::schema::Schema, txn: &Txn, changes: Vec<CommittedChange>);
}

impl WriteOp {
    fn target(&self) -> (usize, u64) {
        match self {
            WriteOp::Create { object, seq, .. }
            | WriteOp::Update { object, seq, .. }
            | WriteOp::Delete { object, seq }
            | WriteOp::Undelete { object, seq } => (*object, *seq),
        }
    }

    fn kind(&self) -> ChangeKind {
        match self {
            WriteOp::Create { .. } => ChangeKind::Create,
            WriteOp::Update { .. } => ChangeKind::Update,
            WriteOp::Delete { .. } => ChangeKind::Delete,
            WriteOp::Undelete { .. } => ChangeKind::Undelete,
        }
    }
}

/// An open write transaction. Dropping it without [`Org::commit`] or [`Org::rollback`] leaves it
/// open, which holds latestDateCovered back: always finish it.
#[derive(Debug)]
pub struct Txn {
    pub id: u64,
    /// Whole second the transaction started: the SystemModstamp of everything it writes.
    pub start: i64,
    ops: Vec<WriteOp>,
    locked: Vec<(usize, u64)>,
    reserved_external_ids: Vec<(usize, (usize, String))>,
}

impl Txn {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Org {
    pub fn begin(&self) -> Txn {
        let start = now_secs();
        let mut t = self.txns.lock();
        t.next_id += 1;
        t.opened_total += 1;
        let id = t.next_id;
        t.started.insert(id, start);
        Txn {
            id,
            start,
            ops: vec![],
            locked: vec![],
            reserved_external_ids: vec![],
        }
    }

    fn writable_object(&self, object: usize) -> Result<&ObjectDef, SfError> {
        let def = &self.schema.objects[object];
        if def.writable {
            Ok(def)
        } else {
            Err(SfError::new(
                "INSUFFICIENT_ACCESS_OR_READONLY",
                format!("insufficient access rights on object {}", def.name),
            ))
        }
    }

    fn lock(&self, txn: &mut Txn, object: usize, seq: u64, id: &str) -> Result<(), SfError> {
        let mut t = self.txns.lock();
        match t.locks.get(&(object, seq)) {
            Some(holder) if *holder != txn.id => Err(SfError::new(
                "UNABLE_TO_LOCK_ROW",
                format!("unable to obtain exclusive access to this record or 1 records: {id}"),
            )),
            Some(_) => Ok(()),
            None => {
                t.locks.insert((object, seq), txn.id);
                txn.locked.push((object, seq));
                Ok(())
            }
        }
    }

    /// Checks lookups point at live records of the right object, and unique external ids are
    /// free (reserving them for this transaction).
    fn check_values(
        &self,
        txn: &mut Txn,
        object: usize,
        seq: u64,
        values: &[(usize, Value)],
    ) -> Result<(), SfError> {
        let reserved_before = txn.reserved_external_ids.len();
        let result = self.check_values_inner(txn, object, seq, values);
        if result.is_err() {
            // A rejected write must not keep the external ids it reserved: the transaction may
            // still commit its other records (allOrNone=false), and the value must stay free.
            let mut tables = self.tables.write();
            for (object, key) in txn.reserved_external_ids.drain(reserved_before..) {
                tables[object].external_ids.remove(&key);
            }
        }
        result
    }

    fn check_values_inner(
        &self,
        txn: &mut Txn,
        object: usize,
        seq: u64,
        values: &[(usize, Value)],
    ) -> Result<(), SfError> {
        let def = &self.schema.objects[object];
        for (idx, v) in values {
            let field = &def.fields[*idx];
            let Value::Text(s) = v else { continue };
            if field.ftype == FieldType::Reference {
                let target = field
                    .reference_to
                    .first()
                    .and_then(|t| self.schema.object_index(t))
                    .expect("reference target exists in schema");
                let ok = ids::parse(s).is_some_and(|(prefix, tseq)| {
                    prefix == self.schema.objects[target].key_prefix
                        && (self.read(|t| t[target].get(tseq).is_some_and(|r| !is_deleted(r)))
                            || txn.ops.iter().any(|op| matches!(op, WriteOp::Create { object: o, seq: q, .. } if *o == target && *q == tseq)))
                });
                if !ok {
                    return Err(SfError::new(
                        "FIELD_INTEGRITY_EXCEPTION",
                        format!("field integrity exception: unknown ({}: id value of incorrect type: {s})", field.label),
                    )
                    .with_fields(vec![field.name.clone()]));
                }
            }
            if field.unique {
                let key = (*idx, s.to_string());
                let mut tables = self.tables.write();
                match tables[object].external_ids.get(&key) {
                    Some(owner) if *owner != seq => {
                        return Err(SfError::new(
                            "DUPLICATE_VALUE",
                            format!(
                                "duplicate value found: {} duplicates value on record with id: {}",
                                field.name,
                                ids::make(&def.key_prefix, *owner)
                            ),
                        )
                        .with_fields(vec![field.name.clone()]));
                    }
                    Some(_) => {}
                    None => {
                        tables[object].external_ids.insert(key.clone(), seq);
                        txn.reserved_external_ids.push((object, key));
                    }
                }
            }
        }
        Ok(())
    }

    fn missing_required(def: &ObjectDef, names: Vec<String>) -> SfError {
        let _ = def;
        SfError::new(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", names.join(", ")),
        )
        .with_fields(names)
    }

    /// Stages a create; answers the new record's Id at once, though it is visible only at commit.
    pub fn create(
        &self,
        txn: &mut Txn,
        object: usize,
        values: Vec<(usize, Value)>,
    ) -> Result<String, SfError> {
        let def = self.writable_object(object)?;
        let missing: Vec<String> = def
            .fields
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                f.required_on_create() && !values.iter().any(|(vi, v)| vi == i && !v.is_null())
            })
            .map(|(_, f)| f.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(Self::missing_required(def, missing));
        }
        let seq = {
            let mut next = self.next_seq.lock();
            let s = next[object];
            next[object] += 1;
            s
        };
        let id = ids::make(&def.key_prefix, seq);
        self.check_values(txn, object, seq, &values)?;
        self.lock(txn, object, seq, &id)?;
        txn.ops.push(WriteOp::Create {
            object,
            seq,
            values,
        });
        Ok(id)
    }

    /// Seeds records that are not createable by clients (User, Organization).
    pub(super) fn stage_system_create(
        &self,
        txn: &mut Txn,
        object: usize,
        values: Vec<(usize, Value)>,
    ) {
        let seq = {
            let mut next = self.next_seq.lock();
            let s = next[object];
            next[object] += 1;
            s
        };
        txn.ops.push(WriteOp::Create {
            object,
            seq,
            values,
        });
    }

    fn live_seq(&self, object: usize, id: &str) -> Result<u64, SfError> {
        let def = &self.schema.objects[object];
        let id18 = ids::normalize(id).ok_or_else(|| SfError::malformed_id(&def.name, id))?;
        let (prefix, seq) = ids::parse(&id18).ok_or_else(SfError::not_found)?;
        if prefix != def.key_prefix {
            return Err(SfError::malformed_id(&def.name, id));
        }
        match self.read(|t| t[object].get(seq).map(is_deleted)) {
            Some(false) => Ok(seq),
            Some(true) => Err(SfError::new("ENTITY_IS_DELETED", "entity is deleted")),
            // Never committed (or still uncommitted) is NOT_FOUND; purged from the bin is deleted.
            None if self.read(|t| t[object].len() as u64) < seq => Err(SfError::not_found()),
            None => Err(SfError::new("ENTITY_IS_DELETED", "entity is deleted")),
        }
    }

    pub fn update(
        &self,
        txn: &mut Txn,
        object: usize,
        id: &str,
        values: Vec<(usize, Value)>,
    ) -> Result<(), SfError> {
        let def = self.writable_object(object)?;
        let seq = self.live_seq(object, id)?;
        let nulled: Vec<String> = values
            .iter()
            .filter(|(i, v)| {
                v.is_null()
                    && !def.fields[*i].nillable
                    && def.fields[*i].ftype != FieldType::Boolean
            })
            .map(|(i, _)| def.fields[*i].name.clone())
            .collect();
        if !nulled.is_empty() {
            return Err(Self::missing_required(def, nulled));
        }
        self.lock(txn, object, seq, id)?;
        self.check_values(txn, object, seq, &values)?;
        txn.ops.push(WriteOp::Update {
            object,
            seq,
            values,
        });
        Ok(())
    }

    pub fn delete(&self, txn: &mut Txn, object: usize, id: &str) -> Result<(), SfError> {
        self.writable_object(object)?;
        let seq = self.live_seq(object, id)?;
        self.lock(txn, object, seq, id)?;
        txn.ops.push(WriteOp::Delete { object, seq });
        Ok(())
    }

    pub fn undelete(&self, txn: &mut Txn, object: usize, id: &str) -> Result<(), SfError> {
        let def = self.writable_object(object)?;
        let id18 = ids::normalize(id).ok_or_else(|| SfError::malformed_id(&def.name, id))?;
        let (_, seq) = ids::parse(&id18).ok_or_else(SfError::not_found)?;
        if self.read(|t| t[object].get(seq).map(is_deleted)) != Some(true) {
            return Err(SfError::new(
                "UNDELETE_FAILED",
                "Entity is not in the recycle bin",
            ));
        }
        self.lock(txn, object, seq, id)?;
        txn.ops.push(WriteOp::Undelete { object, seq });
        Ok(())
    }

    /// Makes every staged change visible at once, stamped with the transaction's start.
    pub fn commit(&self, txn: Txn) {
        let stamp = Value::DateTime(txn.start);
        {
            let mut tables = self.tables.write();
            let observer = self.commit_observer.get();
            let mut changes = Vec::new();
            let now = self.formula_now();
            let mut touched: Vec<(usize, u64)> = Vec::with_capacity(txn.ops.len());
            for op in &txn.ops {
                let before = observer.and_then(|_| {
                    let (object, seq) = op.target();
                    tables[object].get(seq).cloned()
                });
                match op {
                    WriteOp::Create {
                        object,
                        seq,
                        values,
                    } => {
                        let def = &self.schema.objects[*object];
                        let mut row: Vec<Value> = def
                            .fields
                            .iter()
                            .map(|f| {
                                if f.ftype == FieldType::Boolean {
                                    Value::Bool(false)
                                } else {
                                    Value::Null
                                }
                            })
                            .collect();
                        row[F_ID] = Value::text(ids::make(&def.key_prefix, *seq));
                        row[F_CREATED_DATE] = stamp.clone();
                        row[F_CREATED_BY_ID] = Value::text(self.admin_user_id.clone());
                        if let Some(owner) = def.field_index("OwnerId") {
                            row[owner] = Value::text(self.admin_user_id.clone());
                        }
                        for (i, v) in values {
                            row[*i] = v.clone();
                        }
                        apply_defaults(def, *seq, &mut row);
                        stamp_row(&mut row, &stamp, &self.admin_user_id);
                        self.formulas.compute(*object, &mut row, &tables, now);
                        let table = &mut tables[*object];
                        self.formulas.index(*object, *seq, None, &row, table);
                        let slot = *seq as usize - 1;
                        if table.rows.len() <= slot {
                            table.rows.resize(slot + 1, None);
                        }
                        table.rows[slot] = Some(Record::from(row));
                    }
                    WriteOp::Update {
                        object,
                        seq,
                        values,
                    } => {
                        let def = &self.schema.objects[*object];
                        let table = &mut tables[*object];
                        let Some(Some(current)) = table.rows.get(*seq as usize - 1) else {
                            continue;
                        };
                        let old = current.clone();
                        let mut row = current.to_vec();
                        for (i, v) in values {
                            if let Some(Value::Text(old)) = def.fields[*i].unique.then(|| &row[*i])
                            {
                                table.external_ids.remove(&(*i, old.to_string()));
                            }
                            row[*i] = v.clone();
                            if let (true, Value::Text(new)) = (def.fields[*i].unique, v) {
                                table.external_ids.insert((*i, new.to_string()), *seq);
                            }
                        }
                        apply_defaults(def, *seq, &mut row);
                        stamp_row(&mut row, &stamp, &self.admin_user_id);
                        self.formulas.compute(*object, &mut row, &tables, now);
                        let table = &mut tables[*object];
                        self.formulas.index(*object, *seq, Some(&old), &row, table);
                        table.rows[*seq as usize - 1] = Some(Record::from(row));
                    }
                    WriteOp::Delete { object, seq } | WriteOp::Undelete { object, seq } => {
                        let deleted = matches!(op, WriteOp::Delete { .. });
                        let table = &mut tables[*object];
                        let Some(Some(current)) = table.rows.get(*seq as usize - 1) else {
                            continue;
                        };
                        let mut row = current.to_vec();
                        row[F_IS_DELETED] = Value::Bool(deleted);
                        stamp_row(&mut row, &stamp, &self.admin_user_id);
                        self.formulas.compute(*object, &mut row, &tables, now);
                        tables[*object].rows[*seq as usize - 1] = Some(Record::from(row));
                    }
                }
                touched.push(op.target());
                if observer.is_some() {
                    let (object, seq) = op.target();
                    if let Some(after) = tables[object].get(seq) {
                        changes.push(CommittedChange {
                            object,
                            kind: op.kind(),
                            before,
                            after: after.clone(),
                        });
                    }
                }
            }
            // Still under the write lock: observers see commits in commit order.
            if let Some(observer) = observer {
                if !changes.is_empty() {
                    observer.committed(&self.schema, &txn, changes);
                }
            }
            // Children whose formulas read these records change in the same commit, with no
            // stamp and no event of their own.
            self.formulas.propagate(touched, &mut tables, now);
        }
        self.finish(txn, true);
    }

    /// Commits after `delay`, on the runtime: the transaction stays open (and its records
    /// invisible) until then.
    pub fn commit_after(self: &Arc<Self>, txn: Txn, delay: Duration) {
        if delay.is_zero() {
            self.commit(txn);
            return;
        }
        let org = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            org.commit(txn);
        });
    }

    /// Abandons every staged change.
    pub fn rollback(&self, txn: Txn) {
        {
            let mut tables = self.tables.write();
            for (object, key) in &txn.reserved_external_ids {
                tables[*object].external_ids.remove(key);
            }
        }
        self.finish(txn, false);
    }

    fn finish(&self, txn: Txn, committed: bool) {
        let mut t = self.txns.lock();
        t.started.remove(&txn.id);
        for key in &txn.locked {
            t.locks.remove(key);
        }
        if committed {
            t.committed_total += 1;
        }
        drop(t);
        self.txn_closed.notify_waiters();
    }

    /// Whether another open transaction holds this record: the workload skips such records, as
    /// a real user would wait for the lock.
    pub fn is_locked(&self, object: usize, seq: u64) -> bool {
        self.txns.lock().locks.contains_key(&(object, seq))
    }
}

fn stamp_row(row: &mut [Value], stamp: &Value, user: &str) {
    row[F_LAST_MODIFIED_DATE] = stamp.clone();
    row[F_LAST_MODIFIED_BY_ID] = Value::text(user);
    row[F_SYSTEM_MODSTAMP] = stamp.clone();
}

/// Values Salesforce derives or defaults: compound names, auto numbers, default picklist values.
fn apply_defaults(def: &ObjectDef, seq: u64, row: &mut [Value]) {
    let idx = |name: &str| def.field_index(name);
    match def.name.as_str() {
        "Contact" => {
            if let (Some(n), Some(first), Some(last)) =
                (idx("Name"), idx("FirstName"), idx("LastName"))
            {
                let joined = [row[first].as_str(), row[last].as_str()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                row[n] = Value::text(joined);
            }
        }
        "Case" => {
            if let Some(n) = idx("CaseNumber") {
                row[n] = Value::text(format!("{seq:08}"));
            }
            if let Some(s) = idx("Status") {
                if row[s].is_null() {
                    row[s] = Value::text("New");
                }
            }
        }
        "Lead" => {
            if let Some(s) = idx("Status") {
                if row[s].is_null() {
                    row[s] = Value::text("Open - Not Contacted");
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use crate::store::system_modstamp;

    fn account_values(org: &Org, name: &str) -> (usize, Vec<(usize, Value)>) {
        let a = org.schema.object_index("Account").unwrap();
        let n = org.schema.objects[a].field_index("Name").unwrap();
        (a, vec![(n, Value::text(name))])
    }

    #[test]
    fn staged_records_are_invisible_until_commit_and_keep_their_start_stamp() {
        let org = Org::new(Schema::standard());
        let (a, values) = account_values(&org, "Acme");
        let mut txn = org.begin();
        let start = txn.start;
        let id = org.create(&mut txn, a, values).unwrap();
        assert!(org.get_by_id(a, &id).is_none());
        assert_eq!(org.oldest_open_txn_start(), Some(start));
        org.commit(txn);
        let rec = org.get_by_id(a, &id).unwrap();
        assert_eq!(system_modstamp(&rec), start);
        assert_eq!(org.oldest_open_txn_start(), None);
    }

    #[test]
    fn required_fields_and_locks_are_enforced() {
        let org = Org::new(Schema::standard());
        let a = org.schema.object_index("Account").unwrap();
        let mut txn = org.begin();
        let err = org.create(&mut txn, a, vec![]).unwrap_err();
        assert_eq!(err.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(err.fields, vec!["Name".to_string()]);
        let (_, values) = account_values(&org, "Acme");
        let id = org.create(&mut txn, a, values).unwrap();
        org.commit(txn);

        let mut t1 = org.begin();
        let mut t2 = org.begin();
        org.update(&mut t1, a, &id, vec![]).unwrap();
        assert_eq!(
            org.update(&mut t2, a, &id, vec![]).unwrap_err().code,
            "UNABLE_TO_LOCK_ROW"
        );
        org.rollback(t1);
        org.update(&mut t2, a, &id, vec![]).unwrap();
        org.commit(t2);
    }

    #[test]
    fn delete_goes_to_the_recycle_bin_and_undelete_restores() {
        let org = Org::new(Schema::standard());
        let (a, values) = account_values(&org, "Acme");
        let mut txn = org.begin();
        let id = org.create(&mut txn, a, values).unwrap();
        org.commit(txn);
        let mut txn = org.begin();
        org.delete(&mut txn, a, &id).unwrap();
        org.commit(txn);
        assert!(is_deleted(&org.get_by_id(a, &id).unwrap()));
        assert_eq!(org.count(a, false), 0);
        assert_eq!(org.count(a, true), 1);
        let mut txn = org.begin();
        assert_eq!(
            org.delete(&mut txn, a, &id).unwrap_err().code,
            "ENTITY_IS_DELETED"
        );
        org.undelete(&mut txn, a, &id).unwrap();
        org.commit(txn);
        assert!(!is_deleted(&org.get_by_id(a, &id).unwrap()));
    }

    #[test]
    fn unique_external_ids_are_reserved_at_staging() {
        let org = Org::new(Schema::standard());
        let inv = org.schema.object_index("Invoice__c").unwrap();
        let def = &org.schema.objects[inv];
        let name = def.field_index("Name").unwrap();
        let ext = def.field_index("External_Id__c").unwrap();
        let vals = || vec![(name, Value::text("INV-1")), (ext, Value::text("E-1"))];
        let mut t1 = org.begin();
        org.create(&mut t1, inv, vals()).unwrap();
        let mut t2 = org.begin();
        assert_eq!(
            org.create(&mut t2, inv, vals()).unwrap_err().code,
            "DUPLICATE_VALUE"
        );
        org.rollback(t1);
        org.create(&mut t2, inv, vals()).unwrap();
        org.commit(t2);
        assert!(org.find_by_external_id(inv, ext, "E-1").is_some());
    }

    #[test]
    fn a_rejected_create_releases_the_external_ids_it_reserved() {
        let org = Org::new(Schema::standard());
        let inv = org.schema.object_index("Invoice__c").unwrap();
        let def = &org.schema.objects[inv];
        let name = def.field_index("Name").unwrap();
        let ext = def.field_index("External_Id__c").unwrap();
        let acct = def.field_index("Account__c").unwrap();
        let mut txn = org.begin();
        let bad = vec![
            (name, Value::text("INV-1")),
            (ext, Value::text("E-9")),
            (acct, Value::text(ids::make("001", 999))),
        ];
        assert_eq!(
            org.create(&mut txn, inv, bad).unwrap_err().code,
            "FIELD_INTEGRITY_EXCEPTION"
        );
        org.commit(txn);
        assert_eq!(org.find_by_external_id(inv, ext, "E-9"), None);
        let mut txn = org.begin();
        org.create(
            &mut txn,
            inv,
            vec![(name, Value::text("INV-2")), (ext, Value::text("E-9"))],
        )
        .unwrap();
        org.commit(txn);
    }

    #[test]
    fn lookups_must_point_at_live_records() {
        let org = Org::new(Schema::standard());
        let c = org.schema.object_index("Contact").unwrap();
        let def = &org.schema.objects[c];
        let last = def.field_index("LastName").unwrap();
        let acct = def.field_index("AccountId").unwrap();
        let mut txn = org.begin();
        let err = org
            .create(
                &mut txn,
                c,
                vec![
                    (last, Value::text("X")),
                    (acct, Value::text(ids::make("001", 999))),
                ],
            )
            .unwrap_err();
        assert_eq!(err.code, "FIELD_INTEGRITY_EXCEPTION");
        org.rollback(txn);
    }
}
