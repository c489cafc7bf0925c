use crate::ast::{BinaryOp, Expr, FieldPath, Function, UnaryOp};
use crate::lexer::{tokenize, Token};
use crate::MAX_HOPS;

/// Why a formula is outside the supported subset or malformed, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("formula: {message} at offset {offset}")]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            offset,
            message: message.into(),
        }
    }
}

pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: text.len(),
    };
    let expr = p.expr(0)?;
    if p.pos < p.tokens.len() {
        return Err(ParseError::at(
            p.offset(),
            "unexpected text after the formula",
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ParseError::at(self.offset(), format!("expected {what}")))
        }
    }

    /// Precedence climbing over the binary operators; all are left-associative.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while let Some(op) = self.peek().and_then(binary_op) {
            if op.precedence() < min.max(1) {
                break;
            }
            self.pos += 1;
            let right = self.expr(op.precedence() + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Some(Token::Op("-")) => {
                self.pos += 1;
                Ok(Expr::Unary(UnaryOp::Neg, Box::new(self.unary()?)))
            }
            Some(Token::Op("+")) => {
                self.pos += 1;
                self.unary()
            }
            Some(Token::Op("!")) => {
                self.pos += 1;
                Ok(Expr::Unary(UnaryOp::Not, Box::new(self.unary()?)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let at = self.offset();
        match self.next() {
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Text(s)) => Ok(Expr::Text(s)),
            Some(Token::LParen) => {
                let e = self.expr(0)?;
                self.expect(Token::RParen, "`)`")?;
                Ok(e)
            }
            Some(Token::Ident(name)) => {
                if self.peek() == Some(&Token::LParen) {
                    return self.call(at, &name);
                }
                match name.to_ascii_uppercase().as_str() {
                    "TRUE" => return Ok(Expr::Bool(true)),
                    "FALSE" => return Ok(Expr::Bool(false)),
                    "NULL" => return Ok(Expr::Null),
                    _ => {}
                }
                let mut path = vec![name];
                while self.peek() == Some(&Token::Dot) {
                    self.pos += 1;
                    match self.next() {
                        Some(Token::Ident(seg)) => path.push(seg),
                        _ => return Err(ParseError::at(self.offset(), "expected a field name")),
                    }
                }
                if path.len() > MAX_HOPS + 1 {
                    return Err(ParseError::at(
                        at,
                        format!(
                            "{} goes more than {MAX_HOPS} relationships deep",
                            path.join(".")
                        ),
                    ));
                }
                if path[0].starts_with('$') {
                    return Err(ParseError::at(at, format!("{} is not supported", path[0])));
                }
                Ok(Expr::Field(FieldPath(path)))
            }
            Some(other) => Err(ParseError::at(at, format!("unexpected {other:?}"))),
            None => Err(ParseError::at(at, "the formula ends too early")),
        }
    }

    fn call(&mut self, at: usize, name: &str) -> Result<Expr, ParseError> {
        let function = Function::from_name(name)
            .ok_or_else(|| ParseError::at(at, format!("function {name} is not supported")))?;
        self.expect(Token::LParen, "`(`")?;
        let mut args = Vec::new();
        if self.peek() != Some(&Token::RParen) {
            loop {
                args.push(self.expr(0)?);
                if self.peek() == Some(&Token::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(Token::RParen, "`,` or `)`")?;
        let (least, most) = function.arity();
        if args.len() < least || args.len() > most {
            return Err(ParseError::at(
                at,
                format!(
                    "{} takes {}, got {}",
                    function.name(),
                    arity_text(least, most),
                    args.len()
                ),
            ));
        }
        Ok(Expr::Call(function, args))
    }
}

fn arity_text(least: usize, most: usize) -> String {
    match (least, most) {
        (0, 0) => "no arguments".into(),
        (l, m) if l == m => format!("{l} argument{}", if l == 1 { "" } else { "s" }),
        (l, usize::MAX) => format!("at least {l} argument{}", if l == 1 { "" } else { "s" }),
        (l, m) => format!("{l} to {m} arguments"),
    }
}

fn binary_op(t: &Token) -> Option<BinaryOp> {
    let Token::Op(s) = t else { return None };
    Some(match *s {
        "&" => BinaryOp::Concat,
        "+" => BinaryOp::Add,
        "-" => BinaryOp::Sub,
        "*" => BinaryOp::Mul,
        "/" => BinaryOp::Div,
        "=" | "==" => BinaryOp::Eq,
        "!=" | "<>" => BinaryOp::Ne,
        "<" => BinaryOp::Lt,
        "<=" => BinaryOp::Le,
        ">" => BinaryOp::Gt,
        ">=" => BinaryOp::Ge,
        "&&" => BinaryOp::And,
        "||" => BinaryOp::Or,
        _ => return None,
    })
}
