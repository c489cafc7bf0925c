//! Recursive-descent parser for the SOQL subset clients send.

use super::ast::*;
use super::error::malformed;
use super::lexer::{tokenize, unescape, Tok, Token};
use crate::error::SfError;

/// Words that end a field list or expression; they cannot stand as field names.
const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "ORDER", "BY", "LIMIT", "OFFSET", "AND", "OR", "NOT", "IN", "LIKE",
    "NULL", "TRUE", "FALSE", "ASC", "DESC", "NULLS", "INCLUDES", "EXCLUDES", "GROUP", "HAVING",
    "WITH", "FOR", "USING",
];

pub fn parse(src: &str) -> Result<Query, SfError> {
    let tokens = tokenize(src)?;
    let mut p = Parser { src, tokens, at: 0 };
    let q = p.query()?;
    if !matches!(p.peek().tok, Tok::Eof) {
        return Err(p.unexpected());
    }
    Ok(q)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn peek_at(&self, n: usize) -> &Token {
        &self.tokens[(self.at + n).min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.at].clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn unexpected(&self) -> SfError {
        let t = self.peek();
        malformed(
            self.src,
            t.pos,
            format!("unexpected token: {}", t.describe(self.src)),
        )
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn is_kw_at(&self, n: usize, kw: &str) -> bool {
        matches!(&self.peek_at(n).tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SfError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<Token, SfError> {
        if self.peek().tok == tok {
            Ok(self.bump())
        } else {
            Err(self.unexpected())
        }
    }

    fn name(&mut self) -> Result<Name, SfError> {
        match &self.peek().tok {
            Tok::Ident(s) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s)) => {
                let text = s.clone();
                let pos = self.bump().pos;
                Ok(Name { text, pos })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn path(&mut self) -> Result<Path, SfError> {
        let mut parts = vec![self.name()?];
        while self.peek().tok == Tok::Dot {
            self.bump();
            parts.push(self.name()?);
        }
        Ok(Path { parts })
    }

    fn query(&mut self) -> Result<Query, SfError> {
        self.expect_kw("SELECT")?;
        let mut select = vec![self.select_item()?];
        while self.peek().tok == Tok::Comma {
            self.bump();
            select.push(self.select_item()?);
        }
        self.expect_kw("FROM")?;
        let from = self.name()?;
        let filter = if self.eat_kw("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut order_by = vec![];
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            order_by.push(self.order_item()?);
            while self.peek().tok == Tok::Comma {
                self.bump();
                order_by.push(self.order_item()?);
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            Some(self.count_number()?)
        } else {
            None
        };
        let offset = if self.eat_kw("OFFSET") {
            Some(self.count_number()?)
        } else {
            None
        };
        Ok(Query {
            select,
            from,
            filter,
            order_by,
            limit,
            offset,
        })
    }

    fn select_item(&mut self) -> Result<SelectItem, SfError> {
        if self.is_kw("COUNT") && self.peek_at(1).tok == Tok::LParen {
            let pos = self.bump().pos;
            self.bump();
            let arg = if self.peek().tok == Tok::RParen {
                None
            } else {
                Some(self.path()?)
            };
            self.expect(Tok::RParen)?;
            return Ok(SelectItem::Count { arg, pos });
        }
        Ok(SelectItem::Field(self.path()?))
    }

    /// LIMIT and OFFSET take a non-negative integer.
    fn count_number(&mut self) -> Result<Number, SfError> {
        match self.peek().tok {
            Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => {
                let pos = self.bump().pos;
                Ok(Number { value: n, pos })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn order_item(&mut self) -> Result<OrderItem, SfError> {
        let field = self.path()?;
        let descending = if self.eat_kw("DESC") {
            true
        } else {
            self.eat_kw("ASC");
            false
        };
        let nulls_first = if self.eat_kw("NULLS") {
            if self.eat_kw("FIRST") {
                Some(true)
            } else {
                self.expect_kw("LAST")?;
                Some(false)
            }
        } else {
            None
        };
        Ok(OrderItem {
            field,
            descending,
            nulls_first,
        })
    }

    /// Salesforce requires parentheses to mix AND and OR, so one level holds one kind only.
    fn condition(&mut self) -> Result<Expr, SfError> {
        let first = self.term()?;
        let joiner = if self.is_kw("AND") {
            "AND"
        } else if self.is_kw("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let mut terms = vec![first];
        while self.eat_kw(joiner) {
            terms.push(self.term()?);
        }
        if self.is_kw("AND") || self.is_kw("OR") {
            return Err(self.unexpected());
        }
        Ok(if joiner == "AND" {
            Expr::And(terms)
        } else {
            Expr::Or(terms)
        })
    }

    fn term(&mut self) -> Result<Expr, SfError> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.term()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.bump();
            let e = self.condition()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        let field = self.path()?;
        let op = match self.peek().tok {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let value = self.literal()?;
            return Ok(Expr::Cmp { field, op, value });
        }
        if self.eat_kw("LIKE") {
            let pattern = self.literal()?;
            return Ok(Expr::Like { field, pattern });
        }
        if self.is_kw("IN") || (self.is_kw("NOT") && self.is_kw_at(1, "IN")) {
            let negated = self.eat_kw("NOT");
            self.bump();
            let values = self.literal_list()?;
            return Ok(Expr::In {
                field,
                negated,
                values,
            });
        }
        if self.is_kw("INCLUDES") || self.is_kw("EXCLUDES") {
            let excludes = self.is_kw("EXCLUDES");
            self.bump();
            let values = self.literal_list()?;
            return Ok(Expr::Includes {
                field,
                excludes,
                values,
            });
        }
        Err(self.unexpected())
    }

    fn literal_list(&mut self) -> Result<Vec<LiteralAt>, SfError> {
        self.expect(Tok::LParen)?;
        let mut values = vec![self.literal()?];
        while self.peek().tok == Tok::Comma {
            self.bump();
            values.push(self.literal()?);
        }
        self.expect(Tok::RParen)?;
        Ok(values)
    }

    fn literal(&mut self) -> Result<LiteralAt, SfError> {
        let pos = self.peek().pos;
        let lit = match &self.peek().tok {
            Tok::Str(raw) => Literal::Str {
                value: unescape(raw),
                raw: raw.clone(),
            },
            Tok::Num(n) => Literal::Number(*n),
            Tok::Date(d) => Literal::Date(*d),
            Tok::DateTime(t) => Literal::DateTime(*t),
            Tok::Ident(word) => match word.to_ascii_uppercase().as_str() {
                "NULL" => Literal::Null,
                "TRUE" => Literal::Bool(true),
                "FALSE" => Literal::Bool(false),
                "TODAY" => Literal::Relative(RelativeDate::Today),
                "YESTERDAY" => Literal::Relative(RelativeDate::Yesterday),
                "TOMORROW" => Literal::Relative(RelativeDate::Tomorrow),
                w @ ("LAST_N_DAYS" | "NEXT_N_DAYS") => {
                    let last = w == "LAST_N_DAYS";
                    self.bump();
                    self.expect(Tok::Colon)?;
                    let n = match self.peek().tok {
                        Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => {
                            n as u32
                        }
                        _ => return Err(self.unexpected()),
                    };
                    self.bump();
                    let rel = if last {
                        RelativeDate::LastNDays(n)
                    } else {
                        RelativeDate::NextNDays(n)
                    };
                    return Ok(LiteralAt {
                        lit: Literal::Relative(rel),
                        pos,
                    });
                }
                _ => return Err(self.unexpected()),
            },
            _ => return Err(self.unexpected()),
        };
        self.bump();
        Ok(LiteralAt { lit, pos })
    }
}
