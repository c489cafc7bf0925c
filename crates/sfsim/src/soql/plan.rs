//! Resolving a parsed query against the org's schema: names to field indices, literals to the
//! field's type, with the errors Salesforce gives when they do not fit.

use super::ast::*;
use super::error::*;
use super::eval::{Accessor, Like, LikeAtom, Pred, SortKey, SortKind, Test};
use super::{Column, OrderMode, Plan, Relationship};
use crate::error::SfError;
use crate::ids;
use crate::schema::{FieldDef, FieldType, ObjectDef, Schema, F_ID};
use crate::store::{now_secs, Org};
use chrono::{Days, NaiveDate};

/// Salesforce's ceiling on OFFSET.
const MAX_OFFSET: f64 = 2000.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Id,
    Text,
    Multi,
    Bool,
    Num,
    Date,
    DateTime,
}

fn kind(t: FieldType) -> Kind {
    match t {
        FieldType::Id | FieldType::Reference => Kind::Id,
        FieldType::Multipicklist => Kind::Multi,
        FieldType::Boolean => Kind::Bool,
        FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent => Kind::Num,
        FieldType::Date => Kind::Date,
        FieldType::Datetime => Kind::DateTime,
        _ => Kind::Text,
    }
}

/// The type name Salesforce uses in "must be of type X" messages.
fn soql_type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Id | FieldType::Reference => "id",
        FieldType::Boolean => "boolean",
        FieldType::Int => "integer",
        FieldType::Double | FieldType::Currency | FieldType::Percent => "double",
        FieldType::Date => "date",
        FieldType::Datetime => "dateTime",
        _ => "string",
    }
}

struct Resolved<'s> {
    acc: Accessor,
    def: &'s FieldDef,
    field: usize,
    via: Option<Relationship>,
    label: String,
}

struct Resolver<'s> {
    src: &'s str,
    schema: &'s Schema,
    object: usize,
    today: NaiveDate,
}

pub fn plan(org: &Org, src: &str) -> Result<Plan, SfError> {
    let q = super::parser::parse(src)?;
    let schema = &org.schema;
    let object = schema
        .object_index(&q.from.text)
        .ok_or_else(|| invalid_type(src, q.from.pos, &q.from.text))?;
    let today = crate::value::to_utc(now_secs()).date_naive();
    let r = Resolver {
        src,
        schema,
        object,
        today,
    };
    let obj = &schema.objects[object];

    let mut columns: Vec<Column> = Vec::new();
    let mut is_count = false;
    let mut aggregate_alias = None;
    let mut count_nonnull = None;
    for item in &q.select {
        match item {
            SelectItem::Count { arg, pos } => {
                if q.select.len() > 1 {
                    return Err(malformed(
                        src,
                        *pos,
                        "COUNT() must be the only element in the SELECT list".into(),
                    ));
                }
                is_count = true;
                if let Some(path) = arg {
                    let f = r.resolve(path)?;
                    count_nonnull = Some(f.acc);
                    aggregate_alias = Some("expr0".to_string());
                }
            }
            SelectItem::Field(path) => {
                let f = r.resolve(path)?;
                if columns.iter().any(|c| c.label == f.label) {
                    return Err(malformed(
                        src,
                        path.parts.last().map(|p| p.pos).unwrap_or(0),
                        format!("duplicate field selected: {}", f.def.name),
                    ));
                }
                columns.push(Column {
                    label: f.label,
                    field: f.field,
                    via: f.via,
                });
            }
        }
    }

    let filter = q.filter.as_ref().map(|e| r.compile(e)).transpose()?;

    let mut order = Vec::new();
    for item in &q.order_by {
        let f = r.resolve(&item.field)?;
        if !f.def.filterable || f.def.ftype == FieldType::Multipicklist {
            return Err(invalid_field(
                src,
                item.field.pos(),
                &format!("field '{}' can not be sorted in a query call", f.def.name),
            ));
        }
        let sort_kind = match kind(f.def.ftype) {
            Kind::Id => SortKind::Bytes,
            Kind::Text => SortKind::TextCi,
            _ => SortKind::Natural,
        };
        order.push(SortKey {
            acc: f.acc,
            kind: sort_kind,
            descending: item.descending,
            nulls_first: item.nulls_first.unwrap_or(!item.descending),
        });
    }
    // Ids are unique, so keys after an Id key never decide anything; and rows arrive in Id order
    // with ties kept in arrival order, so a trailing `Id ASC` (the usual keyset tiebreak) and a
    // lone `ORDER BY Id` need no sorting work at all.
    if let Some(at) = order
        .iter()
        .position(|k| matches!(k.acc, Accessor::Direct(F_ID)))
    {
        order.truncate(at + 1);
        if !order[at].descending {
            order.pop();
        }
    }
    let order_mode = match order.as_slice() {
        [] => OrderMode::Scan,
        [k] if matches!(k.acc, Accessor::Direct(F_ID)) => OrderMode::Reverse,
        _ => OrderMode::Sort,
    };

    let limit = q.limit.map(|n| n.value as usize);
    let offset = match q.offset {
        Some(n) if n.value > MAX_OFFSET => {
            return Err(SfError::new(
                "NUMBER_OUTSIDE_VALID_RANGE",
                format!(
                    "Maximum SOQL offset allowed for apiName {} is 2000",
                    obj.name
                ),
            ))
        }
        other => other.map(|n| n.value as usize),
    };

    Ok(Plan {
        object,
        columns,
        is_count,
        has_order_by: !q.order_by.is_empty(),
        limit,
        offset,
        aggregate_alias,
        filter,
        order,
        order_mode,
        count_nonnull,
        id_lo: None,
        id_hi: None,
        key_prefix: obj.key_prefix.clone().into_boxed_str(),
    })
}

impl<'s> Resolver<'s> {
    fn obj(&self) -> &'s ObjectDef {
        &self.schema.objects[self.object]
    }

    fn resolve(&self, path: &Path) -> Result<Resolved<'s>, SfError> {
        let obj = self.obj();
        let mut parts: &[Name] = &path.parts;
        // `Account.Name` in a query on Account names the object itself, which SOQL allows.
        if parts.len() > 1
            && parts[0].text.eq_ignore_ascii_case(&obj.name)
            && obj.relationship(&parts[0].text).is_none()
        {
            parts = &parts[1..];
        }
        match parts {
            [field] => {
                let idx = obj
                    .field_index(&field.text)
                    .ok_or_else(|| no_such_column(self.src, field.pos, &field.text, &obj.name))?;
                let def = &obj.fields[idx];
                Ok(Resolved {
                    acc: Accessor::Direct(idx),
                    def,
                    field: idx,
                    via: None,
                    label: def.name.clone(),
                })
            }
            [rel, field] => {
                let (reference_field, ref_def) = obj
                    .relationship(&rel.text)
                    .ok_or_else(|| bad_relationship(self.src, rel.pos, &rel.text))?;
                let target_object = ref_def
                    .reference_to
                    .first()
                    .and_then(|t| self.schema.object_index(t))
                    .ok_or_else(|| bad_relationship(self.src, rel.pos, &rel.text))?;
                let target = &self.schema.objects[target_object];
                let idx = target.field_index(&field.text).ok_or_else(|| {
                    no_such_column(self.src, field.pos, &field.text, &target.name)
                })?;
                let def = &target.fields[idx];
                let name = ref_def.relationship_name.clone().unwrap_or_default();
                Ok(Resolved {
                    acc: Accessor::Parent {
                        reference_field,
                        target_object,
                        target_prefix: target.key_prefix.clone().into_boxed_str(),
                        field: idx,
                    },
                    def,
                    field: idx,
                    label: format!("{name}.{}", def.name),
                    via: Some(Relationship {
                        reference_field,
                        target_object,
                        name,
                    }),
                })
            }
            _ => {
                // Validate the first hop so a typo still gets Salesforce's message.
                let first = &parts[0];
                if obj.relationship(&first.text).is_none() {
                    return Err(bad_relationship(self.src, first.pos, &first.text));
                }
                Err(invalid_field(
                    self.src,
                    first.pos,
                    &format!(
                        "relationship path '{}' is deeper than the simulator supports (one level)",
                        path.dotted()
                    ),
                ))
            }
        }
    }

    fn filterable(&self, path: &Path) -> Result<Resolved<'s>, SfError> {
        let f = self.resolve(path)?;
        if !f.def.filterable {
            return Err(invalid_field(
                self.src,
                path.pos(),
                &format!("field '{}' can not be filtered in a query call", f.def.name),
            ));
        }
        Ok(f)
    }

    fn compile(&self, e: &Expr) -> Result<Pred, SfError> {
        Ok(match e {
            Expr::And(es) => Pred::And(
                es.iter()
                    .map(|e| self.compile(e))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(es) => Pred::Or(
                es.iter()
                    .map(|e| self.compile(e))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(e) => Pred::Not(Box::new(self.compile(e)?)),
            Expr::Cmp { field, op, value } => {
                let f = self.filterable(field)?;
                let test = self.test(f.def, *op, value)?;
                Pred::Leaf(f.acc, test)
            }
            Expr::In {
                field,
                negated,
                values,
            } => {
                let f = self.filterable(field)?;
                let tests = values
                    .iter()
                    .map(|v| self.test(f.def, CmpOp::Eq, v))
                    .collect::<Result<_, _>>()?;
                Pred::Leaf(f.acc, Test::AnyOf(*negated, tests))
            }
            Expr::Like { field, pattern } => {
                let f = self.filterable(field)?;
                if !matches!(kind(f.def.ftype), Kind::Text | Kind::Id) {
                    return Err(self.bad_operator(field, f.def));
                }
                let Literal::Str { raw, .. } = &pattern.lit else {
                    return Err(self.wrong_type(f.def, pattern.pos));
                };
                Pred::Leaf(f.acc, Test::Like(Like::compile(like_pattern(raw))))
            }
            Expr::Includes {
                field,
                excludes,
                values,
            } => {
                let f = self.filterable(field)?;
                if kind(f.def.ftype) != Kind::Multi {
                    return Err(self.bad_operator(field, f.def));
                }
                let mut groups = Vec::new();
                for v in values {
                    let Literal::Str { value, .. } = &v.lit else {
                        return Err(self.wrong_type(f.def, v.pos));
                    };
                    groups.push(split_multi(value));
                }
                Pred::Leaf(f.acc, Test::Includes(*excludes, groups))
            }
        })
    }

    fn bad_operator(&self, field: &Path, def: &FieldDef) -> SfError {
        filter_operator(
            self.src,
            field.pos(),
            &format!("invalid operator on {} field", def.ftype.wire_name()),
        )
    }

    fn wrong_type(&self, def: &FieldDef, pos: usize) -> SfError {
        let quoted = matches!(kind(def.ftype), Kind::Id | Kind::Text | Kind::Multi);
        invalid_field(
            self.src,
            pos,
            &format!(
                "value of filter criterion for field '{}' must be of type {} and should {}be enclosed in quotes",
                def.name,
                soql_type_name(def.ftype),
                if quoted { "" } else { "not " }
            ),
        )
    }

    /// The test for `field op literal`, with the literal converted to the field's type.
    fn test(&self, def: &FieldDef, op: CmpOp, value: &LiteralAt) -> Result<Test, SfError> {
        let k = kind(def.ftype);
        let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
        let null_test = || match op {
            CmpOp::Eq => Test::IsNull,
            CmpOp::Ne => Test::NotNull,
            _ => Test::Never,
        };
        if value.lit == Literal::Null {
            return Ok(null_test());
        }
        Ok(match (k, &value.lit) {
            (Kind::Id, Literal::Str { value: s, .. }) => {
                // Salesforce stores no empty strings, so `= ''` means "is null".
                if s.is_empty() {
                    return Ok(null_test());
                }
                let id18 = ids::normalize(s).ok_or_else(|| {
                    filter_operator(self.src, value.pos, &format!("invalid ID field: {s}"))
                })?;
                Test::Id(op, id18.into_boxed_str())
            }
            (Kind::Text, Literal::Str { value: s, .. }) => {
                if s.is_empty() && !ordering {
                    return Ok(null_test());
                }
                Test::Text(op, s.to_lowercase().into_boxed_str())
            }
            (Kind::Multi, Literal::Str { value: s, .. }) => {
                if ordering {
                    return Err(filter_operator(
                        self.src,
                        value.pos,
                        "invalid operator on multipicklist field",
                    ));
                }
                if s.is_empty() {
                    return Ok(null_test());
                }
                Test::MultiEq(op == CmpOp::Ne, split_multi(s))
            }
            (Kind::Bool, Literal::Bool(b)) => {
                if ordering {
                    return Err(filter_operator(
                        self.src,
                        value.pos,
                        "invalid operator on boolean field",
                    ));
                }
                Test::Bool(op, *b)
            }
            (Kind::Num, Literal::Number(n)) => Test::Num(op, *n),
            (Kind::Date, Literal::Date(d)) => Test::Date(op, *d),
            (Kind::Date, Literal::Relative(r)) => {
                let (lo, hi) = self.relative_range(*r);
                Test::DateRange(op, lo, hi)
            }
            (Kind::DateTime, Literal::DateTime(t)) => Test::DateTime(op, *t),
            (Kind::DateTime, Literal::Relative(r)) => {
                let (lo, hi) = self.relative_range(*r);
                let secs = |d: NaiveDate| {
                    d.and_hms_opt(0, 0, 0)
                        .map(|t| t.and_utc().timestamp())
                        .unwrap_or_default()
                };
                Test::DateTimeRange(op, secs(lo), secs(hi))
            }
            _ => return Err(self.wrong_type(def, value.pos)),
        })
    }

    /// The half-open day range a relative date literal covers, in UTC (the simulated org's
    /// time zone).
    fn relative_range(&self, r: RelativeDate) -> (NaiveDate, NaiveDate) {
        let t = self.today;
        let plus = |d: NaiveDate, n: u32| {
            d.checked_add_days(Days::new(n as u64))
                .unwrap_or(NaiveDate::MAX)
        };
        let minus = |d: NaiveDate, n: u32| {
            d.checked_sub_days(Days::new(n as u64))
                .unwrap_or(NaiveDate::MIN)
        };
        match r {
            RelativeDate::Today => (t, plus(t, 1)),
            RelativeDate::Yesterday => (minus(t, 1), t),
            RelativeDate::Tomorrow => (plus(t, 1), plus(t, 2)),
            RelativeDate::LastNDays(n) => (minus(t, n), plus(t, 1)),
            RelativeDate::NextNDays(n) => (plus(t, 1), plus(t, 1 + n)),
        }
    }
}

fn split_multi(s: &str) -> Vec<Box<str>> {
    s.split(';')
        .map(|v| v.trim().to_lowercase().into_boxed_str())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Compiles a LIKE pattern from the raw literal, where `\%` and `\_` are literal characters
/// and the bare ones are wildcards.
fn like_pattern(raw: &str) -> Vec<LikeAtom> {
    let mut out: Vec<LikeAtom> = Vec::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        let atom = match c {
            '%' => LikeAtom::Any,
            '_' => LikeAtom::One,
            '\\' => match chars.next() {
                Some(e @ ('%' | '_')) => LikeAtom::Char(e),
                Some('u' | 'U') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) => LikeAtom::Char(ch.to_lowercase().next().unwrap_or(ch)),
                        None => continue,
                    }
                }
                Some(e) => {
                    let resolved = super::lexer::unescape(&format!("\\{e}"));
                    LikeAtom::Char(
                        resolved
                            .chars()
                            .next()
                            .unwrap_or(e)
                            .to_lowercase()
                            .next()
                            .unwrap_or(e),
                    )
                }
                None => continue,
            },
            c => LikeAtom::Char(c.to_lowercase().next().unwrap_or(c)),
        };
        // Runs of `%` are one wildcard; collapsing them keeps backtracking cheap.
        if atom == LikeAtom::Any && out.last() == Some(&LikeAtom::Any) {
            continue;
        }
        out.push(atom);
    }
    out
}
