//! What a mapped formula field depends on, from describe's `calculatedFormula`.
//!
//! A formula's value changes without its record's SystemModstamp moving when a parent record it
//! reads through a lookup changes, or when time passes (`TODAY()`, `NOW()`); no poll and no
//! change event sees either. The plan says, per mapped formula field, which parents to watch
//! (and how to find the children of a changed parent in SOQL), and whether it also needs the
//! timed re-read. A formula outside the supported subset, or one reading through a lookup that
//! cannot be followed, falls back to the timed re-read with a one-line reason, never an error.

use formula::Formula;

use crate::describe::{FieldDescribe, ObjectDescribe};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormulaPlan {
    pub fields: Vec<PlannedFormula>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFormula {
    /// The formula field's API name, as describe spells it.
    pub field: String,
    /// Parents whose changes change this field.
    pub parents: Vec<ParentDependency>,
    /// Why the field also needs the timed re-read: it uses `TODAY()`/`NOW()`, or the engine
    /// could not analyse it (then `parents` is empty and the timer is the only refresh).
    pub timed: Option<String>,
}

/// The timed re-read's reason for a formula that reads the clock.
pub const TIME_DEPENDENT: &str = "uses TODAY() or NOW()";

impl PlannedFormula {
    /// Outside what the engine can analyse: only the timer refreshes it.
    pub fn is_unsupported(&self) -> bool {
        self.timed.as_deref().is_some_and(|r| r != TIME_DEPENDENT)
    }
}

/// Children of a changed `object` record are found by `filter IN (parent ids)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentDependency {
    pub object: String,
    /// The parent's fields the formula reads.
    pub fields: Vec<String>,
    /// The child-side SOQL path to the parent's Id: `AccountId`, or `Account.OwnerId` two hops
    /// away.
    pub filter: String,
}

impl FormulaPlan {
    /// Every parent object any formula watches, each once.
    pub fn parent_objects(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in self.fields.iter().flat_map(|f| &f.parents) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&p.object)) {
                out.push(&p.object);
            }
        }
        out
    }

    pub fn needs_timed_refresh(&self) -> bool {
        self.fields.iter().any(|f| f.timed.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Plans the refresh of the calculated fields among `mapped` (field names of `object`).
/// `describe_of` returns another object's describe, for the second hop of a reference.
pub fn plan(
    object: &ObjectDescribe,
    mapped: &[String],
    describe_of: &dyn Fn(&str) -> Option<ObjectDescribe>,
) -> FormulaPlan {
    let fields = mapped
        .iter()
        .filter_map(|name| object.field(name))
        .filter(|f| f.calculated)
        .map(|f| plan_field(object, f, describe_of))
        .collect();
    FormulaPlan { fields }
}

fn plan_field(
    object: &ObjectDescribe,
    field: &FieldDescribe,
    describe_of: &dyn Fn(&str) -> Option<ObjectDescribe>,
) -> PlannedFormula {
    let fallback = |reason: String| PlannedFormula {
        field: field.name.clone(),
        parents: Vec::new(),
        timed: Some(reason),
    };
    let Some(text) = field.calculated_formula.as_deref() else {
        return fallback("describe gives no calculatedFormula".into());
    };
    let parsed = match Formula::parse(text) {
        Ok(f) => f,
        Err(e) => return fallback(e.to_string()),
    };
    let mut parents: Vec<ParentDependency> = Vec::new();
    for path in parsed.references() {
        let hops = path.relationships();
        if hops.is_empty() {
            // Own fields move the record's SystemModstamp: polls already see them.
            continue;
        }
        match follow(object, hops, describe_of) {
            Ok(steps) => {
                // Each step's record is read: the last for the field, the ones before it for the
                // lookup that leads on (an Account whose OwnerId changes changes the formula too).
                let last = steps.len() - 1;
                for (i, step) in steps.into_iter().enumerate() {
                    let read = if i == last {
                        path.field().to_owned()
                    } else {
                        step.next_lookup.clone()
                    };
                    add(&mut parents, step.object, step.filter, read);
                }
            }
            Err(reason) => return fallback(format!("{path}: {reason}")),
        }
    }
    PlannedFormula {
        field: field.name.clone(),
        parents,
        timed: parsed
            .is_time_dependent()
            .then(|| TIME_DEPENDENT.to_owned()),
    }
}

fn add(parents: &mut Vec<ParentDependency>, object: String, filter: String, field: String) {
    match parents
        .iter_mut()
        .find(|p| p.filter.eq_ignore_ascii_case(&filter))
    {
        Some(p) => {
            if !p.fields.iter().any(|f| f.eq_ignore_ascii_case(&field)) {
                p.fields.push(field);
            }
        }
        None => parents.push(ParentDependency {
            object,
            fields: vec![field],
            filter,
        }),
    }
}

/// One record on the way from the child to a referenced field.
struct Step {
    object: String,
    /// The child-side SOQL path to this record's Id.
    filter: String,
    /// The lookup on this record that the path follows next (empty on the last step).
    next_lookup: String,
}

/// Walks relationship names from `object`, one [`Step`] per parent record reached.
fn follow(
    object: &ObjectDescribe,
    hops: &[String],
    describe_of: &dyn Fn(&str) -> Option<ObjectDescribe>,
) -> Result<Vec<Step>, String> {
    let mut current = object.clone();
    let mut prefix: Vec<String> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    for (i, hop) in hops.iter().enumerate() {
        let lookup = current
            .relationship(hop)
            .ok_or_else(|| format!("{} has no relationship {hop}", current.name))?;
        let [to] = lookup.reference_to.as_slice() else {
            return Err(format!(
                "{}.{} is polymorphic ({})",
                current.name,
                lookup.name,
                lookup.reference_to.join(", ")
            ));
        };
        if let Some(previous) = steps.last_mut() {
            previous.next_lookup = lookup.name.clone();
        }
        let mut filter = prefix.clone();
        filter.push(lookup.name.clone());
        steps.push(Step {
            object: to.clone(),
            filter: filter.join("."),
            next_lookup: String::new(),
        });
        prefix.push(lookup.relationship_name.clone().unwrap_or_default());
        if i + 1 < hops.len() {
            current = describe_of(to).ok_or_else(|| format!("no describe for {to}"))?;
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str, to: &[&str], rel: &str) -> FieldDescribe {
        FieldDescribe {
            name: name.into(),
            sf_type: "reference".into(),
            reference_to: to.iter().map(|s| s.to_string()).collect(),
            relationship_name: Some(rel.into()),
            ..Default::default()
        }
    }

    fn formula(name: &str, text: &str) -> FieldDescribe {
        FieldDescribe {
            name: name.into(),
            sf_type: "string".into(),
            calculated: true,
            calculated_formula: Some(text.into()),
            ..Default::default()
        }
    }

    fn plain(name: &str) -> FieldDescribe {
        FieldDescribe {
            name: name.into(),
            sf_type: "string".into(),
            ..Default::default()
        }
    }

    fn contact() -> ObjectDescribe {
        ObjectDescribe {
            name: "Contact".into(),
            fields: vec![
                plain("Id"),
                plain("Email"),
                lookup("AccountId", &["Account"], "Account"),
                lookup("OwnerId", &["Group", "User"], "Owner"),
                formula("Account_Info__c", "Account.Name & ' / ' & Account.Industry"),
                formula("Account_Owner__c", "Account.Owner.Name & Account.Name"),
                formula("Own__c", "Email & '!'"),
                formula("Age__c", "TODAY() - Account.CreatedDate__c"),
                formula("Odd__c", "VLOOKUP(1, 2, 3)"),
                formula("Poly__c", "Owner.Name"),
            ],
        }
    }

    fn account() -> ObjectDescribe {
        ObjectDescribe {
            name: "Account".into(),
            fields: vec![plain("Id"), lookup("OwnerId", &["User"], "Owner")],
        }
    }

    fn plan_of(fields: &[&str]) -> FormulaPlan {
        let mapped: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        plan(&contact(), &mapped, &|name| {
            name.eq_ignore_ascii_case("Account").then(account)
        })
    }

    #[test]
    fn parent_references_become_dependencies_with_their_soql_filter() {
        let p = plan_of(&["Id", "Email", "Account_Info__c", "Account_Owner__c"]);
        assert_eq!(
            p.fields,
            vec![
                PlannedFormula {
                    field: "Account_Info__c".into(),
                    parents: vec![ParentDependency {
                        object: "Account".into(),
                        fields: vec!["Name".into(), "Industry".into()],
                        filter: "AccountId".into(),
                    }],
                    timed: None,
                },
                PlannedFormula {
                    field: "Account_Owner__c".into(),
                    parents: vec![
                        ParentDependency {
                            object: "Account".into(),
                            fields: vec!["OwnerId".into(), "Name".into()],
                            filter: "AccountId".into(),
                        },
                        ParentDependency {
                            object: "User".into(),
                            fields: vec!["Name".into()],
                            filter: "Account.OwnerId".into(),
                        },
                    ],
                    timed: None,
                },
            ]
        );
        assert_eq!(p.parent_objects(), ["Account", "User"]);
        assert!(!p.needs_timed_refresh());
    }

    #[test]
    fn own_fields_need_nothing_and_time_or_the_unanalysable_need_the_timer() {
        let p = plan_of(&["Own__c", "Age__c", "Odd__c", "Poly__c"]);
        let timed: Vec<(&str, Option<&str>, usize)> = p
            .fields
            .iter()
            .map(|f| (f.field.as_str(), f.timed.as_deref(), f.parents.len()))
            .collect();
        assert_eq!(
            timed,
            vec![
                ("Own__c", None, 0),
                ("Age__c", Some("uses TODAY() or NOW()"), 1),
                (
                    "Odd__c",
                    Some("formula: function VLOOKUP is not supported at offset 0"),
                    0
                ),
                (
                    "Poly__c",
                    Some("Owner.Name: Contact.OwnerId is polymorphic (Group, User)"),
                    0
                ),
            ]
        );
        assert!(p.needs_timed_refresh());
        let unsupported: Vec<bool> = p.fields.iter().map(|f| f.is_unsupported()).collect();
        assert_eq!(unsupported, [false, false, true, true]);
    }

    #[test]
    fn mappings_without_formula_fields_plan_nothing() {
        assert!(plan_of(&["Id", "Email", "AccountId"]).is_empty());
    }
}
