use crate::parser::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    Number(f64),
    Text(String),
    Ident(String),
    LParen,
    RParen,
    Comma,
    Dot,
    Op(&'static str),
}

/// Tokens with the byte offset each starts at, for error messages.
pub(crate) fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .ok_or_else(|| ParseError::at(i, "comment is not closed"))?;
                i += end + 4;
            }
            b'(' => push(&mut out, &mut i, start, Token::LParen, 1),
            b')' => push(&mut out, &mut i, start, Token::RParen, 1),
            b',' => push(&mut out, &mut i, start, Token::Comma, 1),
            b'.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                push(&mut out, &mut i, start, Token::Dot, 1)
            }
            b'\'' | b'"' => {
                let (s, len) = string(&text[i..], c).map_err(|m| ParseError::at(i, m))?;
                push(&mut out, &mut i, start, Token::Text(s), len);
            }
            b'0'..=b'9' | b'.' => {
                let len = text[i..]
                    .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
                    .unwrap_or(text.len() - i);
                let n: f64 = text[i..i + len]
                    .parse()
                    .map_err(|_| ParseError::at(i, format!("bad number {}", &text[i..i + len])))?;
                push(&mut out, &mut i, start, Token::Number(n), len);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let len = text[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
                    .unwrap_or(text.len() - i);
                let ident = text[i..i + len].to_owned();
                push(&mut out, &mut i, start, Token::Ident(ident), len);
            }
            _ => {
                let two = text.get(i..i + 2).unwrap_or("");
                let op = ["==", "!=", "<>", "<=", ">=", "&&", "||"]
                    .into_iter()
                    .find(|o| *o == two)
                    .or_else(|| {
                        ["&", "+", "-", "*", "/", "=", "<", ">", "!"]
                            .into_iter()
                            .find(|o| o.as_bytes()[0] == c)
                    })
                    .ok_or_else(|| {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        ParseError::at(i, format!("unexpected character {ch:?}"))
                    })?;
                push(&mut out, &mut i, start, Token::Op(op), op.len());
            }
        }
    }
    Ok(out)
}

fn push(out: &mut Vec<(usize, Token)>, i: &mut usize, start: usize, t: Token, len: usize) {
    out.push((start, t));
    *i += len;
}

/// A quoted literal starting at `s[0]`; returns its value and its length in bytes.
fn string(s: &str, quote: u8) -> Result<(String, usize), String> {
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, ch)) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            c if c as u32 == quote as u32 => return Ok((value, i + 1)),
            c => value.push(c),
        }
    }
    Err("text literal is not closed".into())
}
