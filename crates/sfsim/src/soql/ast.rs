//! The syntax tree of a SOQL statement, before any name is resolved against a schema.

use chrono::NaiveDate;

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub from: Name,
    pub filter: Option<Expr>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<Number>,
    pub offset: Option<Number>,
}

/// An identifier as written, with its byte offset for error carets.
#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub pos: usize,
}

/// `Name`, `Account.Name`: relationship names then a field name.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub parts: Vec<Name>,
}

impl Path {
    pub fn pos(&self) -> usize {
        self.parts[0].pos
    }

    pub fn dotted(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SelectItem {
    Field(Path),
    /// `COUNT()` (no argument) or `COUNT(field)`.
    Count {
        arg: Option<Path>,
        pos: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number {
    pub value: f64,
    pub pos: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelativeDate {
    Today,
    Yesterday,
    Tomorrow,
    LastNDays(u32),
    NextNDays(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    /// `raw` keeps the escapes (LIKE needs `\%` and `\_` distinct from `%` and `_`).
    Str {
        value: String,
        raw: String,
    },
    Date(NaiveDate),
    /// Epoch seconds; any fraction in the literal is already dropped.
    DateTime(i64),
    Relative(RelativeDate),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LiteralAt {
    pub lit: Literal,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        field: Path,
        op: CmpOp,
        value: LiteralAt,
    },
    In {
        field: Path,
        negated: bool,
        values: Vec<LiteralAt>,
    },
    Like {
        field: Path,
        pattern: LiteralAt,
    },
    /// INCLUDES / EXCLUDES on a multi-select picklist.
    Includes {
        field: Path,
        excludes: bool,
        values: Vec<LiteralAt>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderItem {
    pub field: Path,
    pub descending: bool,
    /// None when the query leaves it to the default (ASC → NULLS FIRST, DESC → NULLS LAST).
    pub nulls_first: Option<bool>,
}
