//! A subset of Salesforce's formula language, shared by the simulator (which evaluates
//! `calculated` fields when a record is read) and the engine (which reads `calculatedFormula`
//! from describe to learn what a mapped formula depends on).
//!
//! The subset: field references on the record and through lookups (`Account.Name`, at most two
//! hops), text, number and boolean literals, `&` and `+` concatenation, arithmetic, comparisons,
//! `&&`/`||`/`!` and `AND`/`OR`/`NOT`, `IF`, `ISBLANK`, `BLANKVALUE`, `TEXT`, `TODAY()` and
//! `NOW()`. Anything else is a [`ParseError`]: callers fall back (the engine refreshes such a
//! formula on a timer) rather than guess.

mod ast;
mod eval;
mod lexer;
mod parser;
mod print;

pub use ast::{BinaryOp, Expr, FieldPath, Function, UnaryOp};
pub use eval::{Env, EvalError, Fields, Value};
pub use parser::ParseError;

/// The most relationship hops a reference may take (`Account.Owner.Name` is two).
pub const MAX_HOPS: usize = 2;

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    expr: Expr,
}

impl Formula {
    pub fn parse(text: &str) -> Result<Formula, ParseError> {
        parser::parse(text).map(|expr| Formula { expr })
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Every field the formula reads, each once, in order of first use.
    pub fn references(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.expr.walk(&mut |e| {
            if let Expr::Field(path) = e {
                if !out.contains(path) {
                    out.push(path.clone());
                }
            }
        });
        out
    }

    /// Whether the value can change with time alone (`TODAY()`, `NOW()`), with no record changing.
    pub fn is_time_dependent(&self) -> bool {
        let mut found = false;
        self.expr.walk(&mut |e| {
            if let Expr::Call(Function::Today | Function::Now, _) = e {
                found = true;
            }
        });
        found
    }

    pub fn eval(&self, env: &Env<'_>) -> Result<Value, EvalError> {
        eval::eval(&self.expr, env)
    }
}

impl std::fmt::Display for Formula {
    /// Formula text that parses back to the same formula.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        print::write(&self.expr, f)
    }
}

#[cfg(test)]
mod tests;
