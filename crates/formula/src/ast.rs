/// A field reference: `Name` is one segment; `Account.Name` names the `Account` relationship,
/// then its `Name` field. Segments keep the case they were written in (formulas are
/// case-insensitive; comparisons use [`FieldPath::eq_ignore_case`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// The relationships walked before the field: empty for a field on the record itself.
    pub fn relationships(&self) -> &[String] {
        &self.0[..self.0.len() - 1]
    }

    pub fn field(&self) -> &str {
        &self.0[self.0.len() - 1]
    }

    pub fn eq_ignore_case(&self, other: &FieldPath) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Concat,
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinaryOp {
    /// Binding strength, loosest first, as in Salesforce's operator table.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq | BinaryOp::Ne => 3,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => 4,
            BinaryOp::Concat | BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Mul | BinaryOp::Div => 6,
        }
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Concat => "&",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    If,
    IsBlank,
    BlankValue,
    Text,
    Today,
    Now,
    And,
    Or,
    Not,
}

impl Function {
    pub(crate) fn from_name(name: &str) -> Option<Function> {
        Some(match name.to_ascii_uppercase().as_str() {
            "IF" => Function::If,
            "ISBLANK" => Function::IsBlank,
            "BLANKVALUE" => Function::BlankValue,
            "TEXT" => Function::Text,
            "TODAY" => Function::Today,
            "NOW" => Function::Now,
            "AND" => Function::And,
            "OR" => Function::Or,
            "NOT" => Function::Not,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Function::If => "IF",
            Function::IsBlank => "ISBLANK",
            Function::BlankValue => "BLANKVALUE",
            Function::Text => "TEXT",
            Function::Today => "TODAY",
            Function::Now => "NOW",
            Function::And => "AND",
            Function::Or => "OR",
            Function::Not => "NOT",
        }
    }

    /// The argument counts Salesforce accepts: (least, most).
    pub(crate) fn arity(self) -> (usize, usize) {
        match self {
            Function::If => (3, 3),
            Function::IsBlank | Function::Text | Function::Not => (1, 1),
            Function::BlankValue => (2, 2),
            Function::Today | Function::Now => (0, 0),
            Function::And | Function::Or => (1, usize::MAX),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
    Field(FieldPath),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

impl Expr {
    /// Visits every node, parents before children.
    pub fn walk(&self, visit: &mut impl FnMut(&Expr)) {
        visit(self);
        match self {
            Expr::Unary(_, e) => e.walk(visit),
            Expr::Binary(_, a, b) => {
                a.walk(visit);
                b.walk(visit);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.walk(visit)),
            Expr::Text(_) | Expr::Number(_) | Expr::Bool(_) | Expr::Null | Expr::Field(_) => {}
        }
    }
}
