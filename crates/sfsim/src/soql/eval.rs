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
    Like(Like),
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
            (Test::Text(op @ (CmpOp::Eq | CmpOp::Ne), lit), Value::Text(s)) if s.is_ascii() => {
                (s.len() == lit.len() && s.eq_ignore_ascii_case(lit)) == (*op == CmpOp::Eq)
            }
            (Test::Text(op, lit), Value::Text(s)) => holds(*op, cmp_ci_lower(s, lit)),
            (Test::Id(op, lit), Value::Text(s)) => match op {
                CmpOp::Eq => **s == **lit,
                CmpOp::Ne => **s != **lit,
                _ => holds(*op, id15(s).cmp(id15(lit))),
            },
            (Test::Like(pattern), Value::Text(s)) => pattern.matches(s),
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

/// A compiled LIKE pattern. Most patterns clients write are a literal with `%` at one or both
/// ends; those match bytewise without decoding characters.
#[derive(Clone, Debug)]
pub(crate) enum Like {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    Contains(Box<[u8]>),
    General(Vec<LikeAtom>),
}

impl Like {
    pub fn compile(atoms: Vec<LikeAtom>) -> Like {
        let lead = atoms.first() == Some(&LikeAtom::Any);
        let trail = atoms.len() > usize::from(lead) && atoms.last() == Some(&LikeAtom::Any);
        let inner = &atoms[usize::from(lead)..atoms.len() - usize::from(trail)];
        // ASCII only: an ASCII needle can only match whole characters of UTF-8 text.
        let literal: Option<Box<[u8]>> = inner
            .iter()
            .map(|a| match a {
                LikeAtom::Char(c) if c.is_ascii() => Some(*c as u8),
                _ => None,
            })
            .collect();
        match (literal, lead, trail) {
            (Some(l), false, false) => Like::Exact(l),
            (Some(l), false, true) => Like::Prefix(l),
            (Some(l), true, false) => Like::Suffix(l),
            (Some(l), true, true) => Like::Contains(l),
            (None, ..) => Like::General(atoms),
        }
    }

    pub fn matches(&self, s: &str) -> bool {
        let b = s.as_bytes();
        match self {
            Like::Exact(l) => b.eq_ignore_ascii_case(l),
            Like::Prefix(l) => b.len() >= l.len() && b[..l.len()].eq_ignore_ascii_case(l),
            Like::Suffix(l) => b.len() >= l.len() && b[b.len() - l.len()..].eq_ignore_ascii_case(l),
            Like::Contains(l) => {
                l.is_empty() || b.windows(l.len()).any(|w| w.eq_ignore_ascii_case(l))
            }
            Like::General(p) => like(p, s),
        }
    }
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

/// A row's sort key, extracted once so that most comparisons in a large ORDER BY touch only
/// this flat array: text keys carry their first 8 folded bytes inline, and only ties on those
/// go to the folded text, which lives in one contiguous arena rather than a heap block per row.
#[derive(Debug)]
enum Key<'a> {
    Null,
    /// Case-insensitive text: folded prefix, then the folded text's range in the arena.
    Text(u64, u32, u32),
    /// Ids: raw prefix, then the stored bytes.
    Bytes(u64, &'a [u8]),
    Num(f64),
    Int(i64),
    Date(NaiveDate),
    Bool(bool),
}

/// The first 8 bytes, big-endian so integer order is byte order; shorter input pads with zeros,
/// which sort before any byte as a shorter string sorts before its extensions.
fn prefix8(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

fn key_of<'a>(v: &'a Value, kind: SortKind, arena: &mut String) -> Key<'a> {
    match v {
        Value::Null => Key::Null,
        Value::Text(s) if kind == SortKind::TextCi => {
            // Lower-cased text in byte order is the case-insensitive order.
            let start = arena.len();
            if s.is_ascii() {
                arena.push_str(s);
                arena[start..].make_ascii_lowercase();
            } else {
                arena.extend(s.chars().flat_map(char::to_lowercase));
            }
            let folded = &arena.as_bytes()[start..];
            Key::Text(prefix8(folded), start as u32, folded.len() as u32)
        }
        Value::Text(s) => Key::Bytes(prefix8(s.as_bytes()), s.as_bytes()),
        Value::Int(i) => Key::Num(*i as f64),
        Value::Double(d) => Key::Num(*d),
        Value::DateTime(t) => Key::Int(*t),
        Value::Date(d) => Key::Date(*d),
        Value::Bool(b) => Key::Bool(*b),
    }
}

fn cmp_key(a: &Key, b: &Key, k: &SortKey, arena: &[u8]) -> Ordering {
    let ord = match (a, b) {
        (Key::Null, Key::Null) => return Ordering::Equal,
        (Key::Null, _) => {
            return if k.nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (_, Key::Null) => {
            return if k.nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Key::Text(px, xs, xl), Key::Text(py, ys, yl)) => px.cmp(py).then_with(|| {
            arena[*xs as usize..(*xs + *xl) as usize]
                .cmp(&arena[*ys as usize..(*ys + *yl) as usize])
        }),
        (Key::Bytes(px, x), Key::Bytes(py, y)) => px.cmp(py).then_with(|| x.cmp(y)),
        (Key::Num(x), Key::Num(y)) => x.total_cmp(y),
        (Key::Int(x), Key::Int(y)) => x.cmp(y),
        (Key::Date(x), Key::Date(y)) => x.cmp(y),
        (Key::Bool(x), Key::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    };
    if k.descending {
        ord.reverse()
    } else {
        ord
    }
}

/// Sorts records (given in Id order) by the keys; ties keep Id order. With `keep`, only that
/// many leading rows are needed, so the rest is partitioned away before sorting.
pub(crate) fn sort_records(
    keys: &[SortKey],
    recs: Vec<Record>,
    tables: &[Table],
    keep: Option<usize>,
) -> Vec<Record> {
    let order = {
        let width = keys.len();
        let mut arena = String::new();
        let mut flat = Vec::with_capacity(recs.len() * width);
        for r in &recs {
            for k in keys {
                flat.push(key_of(k.acc.get(r, tables), k.kind, &mut arena));
            }
        }
        let arena = arena.as_bytes();
        let row = |i: u32| &flat[i as usize * width..(i as usize + 1) * width];
        // The row's position is the last tiebreak, which makes the unstable sort stable.
        let cmp = |a: &u32, b: &u32| {
            let (x, y) = (row(*a), row(*b));
            keys.iter()
                .zip(x.iter().zip(y))
                .map(|(k, (p, q))| cmp_key(p, q, k, arena))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
                .then(a.cmp(b))
        };
        let mut order: Vec<u32> = (0..recs.len() as u32).collect();
        if let Some(n) = keep.filter(|n| *n < order.len()) {
            if n == 0 {
                return Vec::new();
            }
            order.select_nth_unstable_by(n - 1, cmp);
            order.truncate(n);
        }
        order.sort_unstable_by(cmp);
        order
    };
    let mut slots: Vec<Option<Record>> = recs.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots[i as usize].take())
        .collect()
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
    fn like_fast_paths_agree_with_the_general_matcher() {
        let texts = [
            "Acme Corp",
            "acme",
            "ACME",
            "",
            "x acme y",
            "Zürich",
            "corp",
            "ac",
        ];
        for p in [
            "acme%", "%corp", "%me%", "acme", "%", "", "a_me%", "zür%", "%ACME%",
        ] {
            let lowered = p.to_lowercase();
            let compiled = Like::compile(pat(&lowered));
            for t in texts {
                assert_eq!(compiled.matches(t), like(&pat(&lowered), t), "{p} on {t}");
            }
        }
    }

    #[test]
    fn multipicklist_equality_ignores_order() {
        let set: Vec<Box<str>> = vec!["a".into(), "b".into()];
        assert!(multi_eq("B;A", &set));
        assert!(!multi_eq("A", &set));
        assert!(!multi_eq("A;B;C", &set));
    }
}
