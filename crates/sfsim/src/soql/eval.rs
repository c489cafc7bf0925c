//! The compiled form of a query and its evaluation. Everything here works on field indices and
//! pre-converted literals, so filtering a row costs a few comparisons and no allocation.

use super::ast::CmpOp;
use crate::ids;
use crate::store::{is_deleted, Record, Table};
use crate::value::Value;
use chrono::NaiveDate;
use std::cmp::Ordering;

static NULL: Value = Value::Null;

/// Where a value comes from: the row itself or its parent through a lookup.
#[derive(Clone, Debug)]
pub(crate) enum Accessor {
    Direct(usize),
    Parent {
        reference_field: usize,
        target_object: usize,
        target_prefix: Box<str>,
        field: usize,
    },
}

impl Accessor {
    #[inline]
    pub fn get<'a>(&self, rec: &'a [Value], tables: &'a [Table]) -> &'a Value {
        match self {
            Accessor::Direct(i) => &rec[*i],
            Accessor::Parent {
                reference_field,
                target_object,
                target_prefix,
                field,
            } => {
                match parent(
                    &rec[*reference_field],
                    *target_object,
                    target_prefix,
                    tables,
                ) {
                    Some(p) => &p[*field],
                    None => &NULL,
                }
            }
        }
    }
}

/// The live parent a lookup value points at. A deleted parent reads as null: Salesforce clears
/// or cascades lookups when the parent goes to the recycle bin.
pub(crate) fn parent<'a>(
    v: &Value,
    target: usize,
    prefix: &str,
    tables: &'a [Table],
) -> Option<&'a Record> {
    let (p, seq) = ids::parse(v.as_str()?)?;
    if p != prefix {
        return None;
    }
    tables[target].get(seq).filter(|r| !is_deleted(r))
}

#[derive(Clone, Debug)]
pub(crate) enum Pred {
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    Leaf(Accessor, Test),
}

impl Pred {
    pub fn eval(&self, rec: &[Value], tables: &[Table]) -> bool {
        match self {
            Pred::And(ps) => ps.iter().all(|p| p.eval(rec, tables)),
            Pred::Or(ps) => ps.iter().any(|p| p.eval(rec, tables)),
            Pred::Not(p) => !p.eval(rec, tables),
            Pred::Leaf(acc, test) => test.eval(acc.get(rec, tables)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LikeAtom {
    /// `%`
    Any,
    /// `_`
    One,
    /// A literal character, already lower-cased: LIKE is case-insensitive.
    Char(char),
}

/// One comparison against one value. A null value satisfies only `!=` (and IS NULL), as in
/// SOQL, where `Name != 'x'` returns the rows whose Name is null.
#[derive(Clone, Debug)]
pub(crate) enum Test {
    Never,
    IsNull,
    NotNull,
    Num(CmpOp, f64),
    DateTime(CmpOp, i64),
    /// A relative date literal on a datetime field: the half-open second range `[lo, hi)`.
    DateTimeRange(CmpOp, i64, i64),
    Date(CmpOp, NaiveDate),
    DateRange(CmpOp, NaiveDate, NaiveDate),
    Bool(CmpOp, bool),
    /// Text compared case-insensitively; the literal is stored lower-cased.
    Text(CmpOp, Box<str>),
    /// An 18-character Id: equality on all 18, ranges on the first 15 bytewise.
    Id(CmpOp, Box<str>),
    Like(Vec<LikeAtom>),
    /// Multi-select picklist `=`: the same set of values in any order; lower-cased.
    MultiEq(bool, Vec<Box<str>>),
    /// INCLUDES (false) / EXCLUDES (true): any group whose values are all selected.
    Includes(bool, Vec<Vec<Box<str>>>),
    /// IN (false) / NOT IN (true).
    AnyOf(bool, Vec<Test>),
}

#[inline]
fn holds(op: CmpOp, ord: Ordering) -> bool {
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

/// Membership of `x` in `[lo, hi)` read through a comparison operator: `= TODAY` is "during
/// today", `> TODAY` is "after today", `<= TODAY` is "before tomorrow".
#[inline]
fn in_range<T: Ord>(op: CmpOp, x: T, lo: T, hi: T) -> bool {
    match op {
        CmpOp::Eq => x >= lo && x < hi,
        CmpOp::Ne => !(x >= lo && x < hi),
        CmpOp::Lt => x < lo,
        CmpOp::Le => x < hi,
        CmpOp::Gt => x >= hi,
        CmpOp::Ge => x >= lo,
    }
}

impl Test {
    pub fn eval(&self, v: &Value) -> bool {
        if v.is_null() {
            return match self {
                Test::IsNull => true,
                Test::Never | Test::NotNull | Test::Like(_) => false,
                Test::Num(op, _)
                | Test::DateTime(op, _)
                | Test::DateTimeRange(op, ..)
                | Test::Date(op, _)
                | Test::DateRange(op, ..)
                | Test::Bool(op, _)
                | Test::Text(op, _)
                | Test::Id(op, _) => *op == CmpOp::Ne,
                Test::MultiEq(negated, _) | Test::Includes(negated, _) => *negated,
                Test::AnyOf(negated, tests) => tests.iter().any(|t| t.eval(v)) != *negated,
            };
        }
        match (self, v) {
            (Test::IsNull | Test::Never, _) => false,
            (Test::NotNull, _) => true,
            (Test::Num(op, x), Value::Int(i)) => {
                (*i as f64).partial_cmp(x).is_some_and(|o| holds(*op, o))
            }
            (Test::Num(op, x), Value::Double(d)) => d.partial_cmp(x).is_some_and(|o| holds(*op, o)),
            (Test::DateTime(op, t), Value::DateTime(s)) => holds(*op, s.cmp(t)),
            (Test::DateTimeRange(op, lo, hi), Value::DateTime(s)) => in_range(*op, *s, *lo, *hi),
            (Test::Date(op, d), Value::Date(x)) => holds(*op, x.cmp(d)),
            (Test::DateRange(op, lo, hi), Value::Date(x)) => in_range(*op, *x, *lo, *hi),
            (Test::Bool(op, b), Value::Bool(x)) => holds(*op, x.cmp(b)),
            (Test::Text(op, lit), Value::Text(s)) => holds(*op, cmp_ci_lower(s, lit)),
            (Test::Id(op, lit), Value::Text(s)) => match op {
                CmpOp::Eq => **s == **lit,
                CmpOp::Ne => **s != **lit,
                _ => holds(*op, id15(s).cmp(id15(lit))),
            },
            (Test::Like(pattern), Value::Text(s)) => like(pattern, s),
            (Test::MultiEq(negated, set), Value::Text(s)) => multi_eq(s, set) != *negated,
            (Test::Includes(excludes, groups), Value::Text(s)) => {
                groups
                    .iter()
                    .any(|g| g.iter().all(|want| multi_has(s, want)))
                    != *excludes
            }
            (Test::AnyOf(negated, tests), v) => tests.iter().any(|t| t.eval(v)) != *negated,
            _ => false,
        }
    }
}

/// The part of an Id that orders it: its 15-character case-sensitive form.
#[inline]
pub(crate) fn id15(s: &str) -> &[u8] {
    let b = s.as_bytes();
    &b[..b.len().min(15)]
}

#[inline]
fn fold(c: char) -> char {
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

/// Case-insensitive comparison of a stored text with an already lower-cased literal.
#[inline]
fn cmp_ci_lower(s: &str, lower: &str) -> Ordering {
    if s.is_ascii() {
        s.bytes().map(|b| b.to_ascii_lowercase()).cmp(lower.bytes())
    } else {
        s.chars().flat_map(char::to_lowercase).cmp(lower.chars())
    }
}

/// Case-insensitive ordering of two stored texts, as ORDER BY sorts text.
#[inline]
fn cmp_ci(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .cmp(b.chars().flat_map(char::to_lowercase))
    }
}

fn multi_has(stored: &str, want_lower: &str) -> bool {
    stored
        .split(';')
        .any(|v| cmp_ci_lower(v.trim(), want_lower) == Ordering::Equal)
}

fn multi_eq(stored: &str, set: &[Box<str>]) -> bool {
    let mut n = 0;
    for v in stored.split(';') {
        let v = v.trim();
        if !set.iter().any(|w| cmp_ci_lower(v, w) == Ordering::Equal) {
            return false;
        }
        n += 1;
    }
    n == set.len()
}

/// Wildcard matching with single-star backtracking: linear in practice, no allocation.
fn like(pattern: &[LikeAtom], text: &str) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            match pattern[p] {
                LikeAtom::Any => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                LikeAtom::One => {
                    if let Some(c) = text[t..].chars().next() {
                        t += c.len_utf8();
                        p += 1;
                        continue;
                    }
                }
                LikeAtom::Char(pc) => {
                    if let Some(c) = text[t..].chars().next() {
                        if fold(c) == pc {
                            t += c.len_utf8();
                            p += 1;
                            continue;
                        }
                    }
                }
            }
        } else if t == text.len() {
            return true;
        }
        match star {
            Some((sp, st)) if st < text.len() => {
                let c = text[st..].chars().next().unwrap_or(' ');
                let next = st + c.len_utf8();
                star = Some((sp, next));
                p = sp;
                t = next;
            }
            _ => return false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortKind {
    /// Ids and lookups: base-62 order is byte order.
    Bytes,
    TextCi,
    Natural,
}

#[derive(Clone, Debug)]
pub(crate) struct SortKey {
    pub acc: Accessor,
    pub kind: SortKind,
    pub descending: bool,
    pub nulls_first: bool,
}

pub(crate) fn compare_rows(
    keys: &[SortKey],
    a: &[Value],
    b: &[Value],
    tables: &[Table],
) -> Ordering {
    for k in keys {
        let (x, y) = (k.acc.get(a, tables), k.acc.get(b, tables));
        let ord = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = compare_values(x, y, k.kind);
                if k.descending {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

fn compare_values(x: &Value, y: &Value, kind: SortKind) -> Ordering {
    match (x, y) {
        (Value::Text(a), Value::Text(b)) => match kind {
            SortKind::TextCi => cmp_ci(a, b),
            _ => a.as_bytes().cmp(b.as_bytes()),
        },
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Int(a), Value::Double(b)) => (*a as f64).total_cmp(b),
        (Value::Double(a), Value::Int(b)) => a.total_cmp(&(*b as f64)),
        (Value::Double(a), Value::Double(b)) => a.total_cmp(b),
        (Value::DateTime(a), Value::DateTime(b)) => a.cmp(b),
        (Value::Date(a), Value::Date(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Vec<LikeAtom> {
        s.chars()
            .map(|c| match c {
                '%' => LikeAtom::Any,
                '_' => LikeAtom::One,
                c => LikeAtom::Char(c),
            })
            .collect()
    }

    #[test]
    fn like_matches_wildcards_case_insensitively() {
        assert!(like(&pat("acme%"), "ACME Corp"));
        assert!(like(&pat("%corp"), "Acme Corp"));
        assert!(like(&pat("a_me%"), "Acme"));
        assert!(like(&pat("%c%o%"), "Acme Corp"));
        assert!(!like(&pat("acme"), "Acme Corp"));
        assert!(!like(&pat("a_me"), "ame"));
        assert!(like(&pat("%"), ""));
        assert!(like(&pat("zür%"), "Zürich"));
    }

    #[test]
    fn multipicklist_equality_ignores_order() {
        let set: Vec<Box<str>> = vec!["a".into(), "b".into()];
        assert!(multi_eq("B;A", &set));
        assert!(!multi_eq("A", &set));
        assert!(!multi_eq("A;B;C", &set));
    }
}
