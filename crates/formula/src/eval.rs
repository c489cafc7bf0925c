use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::ast::{BinaryOp, Expr, FieldPath, Function, UnaryOp};

/// A formula value. Blank text and null are both "blank" for `ISBLANK`, as in Salesforce.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Number(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

impl Value {
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(s) => s.is_empty(),
            _ => false,
        }
    }

    /// As `TEXT()` and `&` render it.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Text(s) => s.clone(),
            Value::Number(n) => number_text(*n),
            Value::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
            Value::DateTime(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Text(_) => "text",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Date(_) => "date",
            Value::DateTime(_) => "date/time",
        }
    }
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Where field values come from: the record itself and, through its lookups, its parents.
pub trait Fields {
    /// The value at `path` (one segment: a field of the record; more: relationships first).
    /// A lookup that is empty yields [`Value::Null`] for every field behind it.
    fn field(&self, path: &FieldPath) -> Value;
}

pub struct Env<'a> {
    pub fields: &'a dyn Fields,
    /// What `NOW()` returns; `TODAY()` is its date (UTC, as the simulator's org time zone).
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("formula: {0}")]
pub struct EvalError(pub String);

fn type_error(op: &str, a: &Value, b: &Value) -> EvalError {
    EvalError(format!("{op} cannot combine {} and {}", a.kind(), b.kind()))
}

pub(crate) fn eval(e: &Expr, env: &Env<'_>) -> Result<Value, EvalError> {
    Ok(match e {
        Expr::Text(s) => Value::Text(s.clone()),
        Expr::Number(n) => Value::Number(*n),
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Null => Value::Null,
        Expr::Field(p) => env.fields.field(p),
        Expr::Unary(UnaryOp::Neg, inner) => match eval(inner, env)? {
            Value::Number(n) => Value::Number(-n),
            Value::Null => Value::Null,
            other => return Err(EvalError(format!("- cannot negate {}", other.kind()))),
        },
        Expr::Unary(UnaryOp::Not, inner) => Value::Bool(!truth(&eval(inner, env)?)?),
        Expr::Binary(BinaryOp::And, a, b) => {
            Value::Bool(truth(&eval(a, env)?)? && truth(&eval(b, env)?)?)
        }
        Expr::Binary(BinaryOp::Or, a, b) => {
            Value::Bool(truth(&eval(a, env)?)? || truth(&eval(b, env)?)?)
        }
        Expr::Binary(op, a, b) => binary(*op, eval(a, env)?, eval(b, env)?)?,
        Expr::Call(f, args) => call(*f, args, env)?,
    })
}

/// A condition: null counts as false, as an unset checkbox does.
fn truth(v: &Value) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        other => Err(EvalError(format!(
            "expected a condition, got {}",
            other.kind()
        ))),
    }
}

fn binary(op: BinaryOp, a: Value, b: Value) -> Result<Value, EvalError> {
    use Value::*;
    Ok(match op {
        BinaryOp::Concat => Text(a.to_text() + &b.to_text()),
        BinaryOp::Add => match (&a, &b) {
            (Text(_), _) | (_, Text(_)) => Text(a.to_text() + &b.to_text()),
            (Null, _) | (_, Null) => Null,
            (Number(x), Number(y)) => Number(x + y),
            (Date(d), Number(n)) | (Number(n), Date(d)) => Date(*d + Duration::days(*n as i64)),
            (DateTime(t), Number(n)) | (Number(n), DateTime(t)) => {
                DateTime(*t + Duration::milliseconds((n * 86_400_000.0) as i64))
            }
            _ => return Err(type_error("+", &a, &b)),
        },
        BinaryOp::Sub => match (&a, &b) {
            (Null, _) | (_, Null) => Null,
            (Number(x), Number(y)) => Number(x - y),
            (Date(d), Number(n)) => Date(*d - Duration::days(*n as i64)),
            (Date(x), Date(y)) => Number((*x - *y).num_days() as f64),
            (DateTime(t), Number(n)) => {
                DateTime(*t - Duration::milliseconds((n * 86_400_000.0) as i64))
            }
            (DateTime(x), DateTime(y)) => {
                Number((*x - *y).num_milliseconds() as f64 / 86_400_000.0)
            }
            _ => return Err(type_error("-", &a, &b)),
        },
        BinaryOp::Mul | BinaryOp::Div => match (&a, &b) {
            (Null, _) | (_, Null) => Null,
            (Number(x), Number(y)) if op == BinaryOp::Mul => Number(x * y),
            // Salesforce reports division by zero as an error value; the field reads blank.
            (Number(_), Number(y)) if *y == 0.0 => Null,
            (Number(x), Number(y)) => Number(x / y),
            _ => return Err(type_error(op.symbol(), &a, &b)),
        },
        BinaryOp::Eq | BinaryOp::Ne => {
            let equal = match (&a, &b) {
                (x, y) if x.is_blank() && y.is_blank() => true,
                (Text(x), Text(y)) => x == y,
                (Number(x), Number(y)) => x == y,
                (Bool(x), Bool(y)) => x == y,
                (Date(x), Date(y)) => x == y,
                (DateTime(x), DateTime(y)) => x == y,
                (x, y) if x.is_blank() || y.is_blank() => false,
                _ => return Err(type_error(op.symbol(), &a, &b)),
            };
            Bool(equal == (op == BinaryOp::Eq))
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let ord = match (&a, &b) {
                (Null, _) | (_, Null) => return Ok(Bool(false)),
                (Number(x), Number(y)) => x.partial_cmp(y),
                (Text(x), Text(y)) => Some(x.cmp(y)),
                (Date(x), Date(y)) => Some(x.cmp(y)),
                (DateTime(x), DateTime(y)) => Some(x.cmp(y)),
                _ => return Err(type_error(op.symbol(), &a, &b)),
            };
            let Some(ord) = ord else {
                return Ok(Bool(false));
            };
            Bool(match op {
                BinaryOp::Lt => ord.is_lt(),
                BinaryOp::Le => ord.is_le(),
                BinaryOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        BinaryOp::And | BinaryOp::Or => unreachable!("short-circuited in eval"),
    })
}

fn call(f: Function, args: &[Expr], env: &Env<'_>) -> Result<Value, EvalError> {
    Ok(match f {
        Function::If => {
            if truth(&eval(&args[0], env)?)? {
                eval(&args[1], env)?
            } else {
                eval(&args[2], env)?
            }
        }
        Function::IsBlank => Value::Bool(eval(&args[0], env)?.is_blank()),
        Function::BlankValue => {
            let v = eval(&args[0], env)?;
            if v.is_blank() {
                eval(&args[1], env)?
            } else {
                v
            }
        }
        Function::Text => match eval(&args[0], env)? {
            Value::Null => Value::Null,
            v => Value::Text(v.to_text()),
        },
        Function::Today => Value::Date(env.now.date_naive()),
        Function::Now => Value::DateTime(env.now),
        Function::And => {
            for a in args {
                if !truth(&eval(a, env)?)? {
                    return Ok(Value::Bool(false));
                }
            }
            Value::Bool(true)
        }
        Function::Or => {
            for a in args {
                if truth(&eval(a, env)?)? {
                    return Ok(Value::Bool(true));
                }
            }
            Value::Bool(false)
        }
        Function::Not => Value::Bool(!truth(&eval(&args[0], env)?)?),
    })
}
