use std::fmt::{self, Write};

use crate::ast::{Expr, UnaryOp};

/// Writes formula text with just the parentheses precedence needs, so `parse(print(e)) == e`.
pub(crate) fn write(e: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write_at(e, 0, f)
}

fn write_at(e: &Expr, min: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match e {
        Expr::Text(s) => {
            f.write_char('\'')?;
            for ch in s.chars() {
                match ch {
                    '\'' => f.write_str("\\'")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c => f.write_char(c)?,
                }
            }
            f.write_char('\'')
        }
        Expr::Number(n) => write!(f, "{n}"),
        Expr::Bool(b) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
        Expr::Null => f.write_str("NULL"),
        Expr::Field(p) => write!(f, "{p}"),
        Expr::Unary(op, inner) => {
            f.write_str(match op {
                UnaryOp::Neg => "-",
                UnaryOp::Not => "!",
            })?;
            // Operands of a unary operator bind tighter than any binary operator.
            write_at(inner, u8::MAX, f)
        }
        Expr::Binary(op, a, b) => {
            let p = op.precedence();
            let paren = p < min;
            if paren {
                f.write_char('(')?;
            }
            write_at(a, p, f)?;
            write!(f, " {} ", op.symbol())?;
            // Left-associative: a right operand of the same precedence needs parentheses.
            write_at(b, p + 1, f)?;
            if paren {
                f.write_char(')')?;
            }
            Ok(())
        }
        Expr::Call(func, args) => {
            write!(f, "{}(", func.name())?;
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_at(a, 0, f)?;
            }
            f.write_char(')')
        }
    }
}
