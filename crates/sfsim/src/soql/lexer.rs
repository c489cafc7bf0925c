//! Tokens of a SOQL statement. Literal forms are recognised here (dates, datetimes, strings with
//! escapes) so that a malformed literal is reported at its own column, as Salesforce does.

use super::error::malformed;
use crate::error::SfError;
use chrono::{NaiveDate, NaiveTime};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifiers and keywords alike: keywords are recognised by the parser, case-insensitively,
    /// because most of them may also be field names elsewhere.
    Ident(String),
    /// The text between the quotes, escapes still in place; see [`unescape`] and the LIKE compiler.
    Str(String),
    Num(f64),
    Date(NaiveDate),
    /// Epoch seconds, fraction dropped: comparisons are at whole-second precision.
    DateTime(i64),
    Comma,
    LParen,
    RParen,
    Dot,
    Colon,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte offset into the statement, for the caret pointer.
    pub pos: usize,
}

impl Token {
    /// How the token reads in "unexpected token" messages.
    pub fn describe(&self, src: &str) -> String {
        match self.tok {
            Tok::Eof => "<EOF>".to_string(),
            _ => format!("'{}'", token_text(src, self.pos)),
        }
    }
}

/// The source text of the token starting at `pos`, approximately (up to the next separator).
fn token_text(src: &str, pos: usize) -> &str {
    let rest = &src[pos..];
    let first = rest.chars().next().unwrap_or(' ');
    if first == '\'' {
        let end = rest[1..].find('\'').map(|i| i + 2).unwrap_or(rest.len());
        return &rest[..end];
    }
    if !(first.is_alphanumeric() || first == '_' || first == '-') {
        let two = rest.get(..2).unwrap_or(rest);
        if matches!(two, "!=" | "<>" | "<=" | ">=") {
            return two;
        }
        return &rest[..first.len_utf8()];
    }
    let end = rest
        .char_indices()
        .skip(1)
        .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '+' | '.')))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    &rest[..end]
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, SfError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let simple = |tok| Token { tok, pos: start };
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b',' => out.push(simple(Tok::Comma)),
            b'(' => out.push(simple(Tok::LParen)),
            b')' => out.push(simple(Tok::RParen)),
            b'.' => out.push(simple(Tok::Dot)),
            b':' => out.push(simple(Tok::Colon)),
            b'=' => out.push(simple(Tok::Eq)),
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push(simple(Tok::Ne));
                i += 1;
            }
            b'<' => match bytes.get(i + 1) {
                Some(b'>') => {
                    out.push(simple(Tok::Ne));
                    i += 1;
                }
                Some(b'=') => {
                    out.push(simple(Tok::Le));
                    i += 1;
                }
                _ => out.push(simple(Tok::Lt)),
            },
            b'>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    out.push(simple(Tok::Ge));
                    i += 1;
                } else {
                    out.push(simple(Tok::Gt));
                }
            }
            b'\'' => {
                let (raw, end) = lex_string(src, i)?;
                out.push(Token {
                    tok: Tok::Str(raw),
                    pos: start,
                });
                i = end;
                continue;
            }
            b'0'..=b'9' | b'-' | b'+' if starts_number(bytes, i) => {
                let (tok, end) = lex_number_or_date(src, i)?;
                out.push(Token { tok, pos: start });
                i = end;
                continue;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let end = bytes[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map(|n| i + n)
                    .unwrap_or(bytes.len());
                out.push(Token {
                    tok: Tok::Ident(src[i..end].to_string()),
                    pos: start,
                });
                i = end;
                continue;
            }
            _ => {
                let c = src[i..].chars().next().unwrap_or(' ');
                return Err(malformed(
                    src,
                    i,
                    format!("no viable alternative at character '{c}'"),
                ));
            }
        }
        i += 1;
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

fn starts_number(bytes: &[u8], i: usize) -> bool {
    match bytes[i] {
        b'0'..=b'9' => true,
        _ => bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()),
    }
}

/// Scans a quoted string, checking its escapes; returns the raw inner text and the end offset.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), SfError> {
    let bytes = src.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => return Ok((src[start + 1..i].to_string(), i + 1)),
            b'\\' => {
                let Some(&e) = bytes.get(i + 1) else { break };
                let ok = match e {
                    b'n' | b'N' | b'r' | b'R' | b't' | b'T' | b'b' | b'B' | b'f' | b'F' | b'"'
                    | b'\'' | b'\\' | b'_' | b'%' => true,
                    b'u' | b'U' => src
                        .get(i + 2..i + 6)
                        .is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())),
                    _ => false,
                };
                if !ok {
                    let seq: String = src[i..].chars().take(2).collect();
                    let lit_end = src[i + 1..]
                        .find('\'')
                        .map(|n| i + 2 + n)
                        .unwrap_or(src.len());
                    return Err(malformed(
                        src,
                        start,
                        format!(
                            "Invalid string literal '{}'. Illegal character sequence '{seq}' in string literal.",
                            &src[start + 1..lit_end.saturating_sub(1).max(start + 1)]
                        ),
                    ));
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    Err(malformed(
        src,
        start,
        format!("line 1:{start} mismatched character '<EOF>' expecting '''"),
    ))
}

/// The value of a string literal with its escapes resolved. `\%` and `\_` become the bare
/// characters: they only mean something different inside LIKE patterns.
pub fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some('r' | 'R') => out.push('\r'),
            Some('t' | 'T') => out.push('\t'),
            Some('b' | 'B') => out.push('\u{8}'),
            Some('f' | 'F') => out.push('\u{c}'),
            Some('u' | 'U') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = bytes.get(at..at + n)?;
    if !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |acc, d| acc * 10 + (d - b'0') as u32))
}

fn lex_number_or_date(src: &str, start: usize) -> Result<(Tok, usize), SfError> {
    let bytes = src.as_bytes();
    if let (Some(y), Some(b'-'), Some(m), Some(b'-'), Some(d)) = (
        digits(bytes, start, 4),
        bytes.get(start + 4),
        digits(bytes, start + 5, 2),
        bytes.get(start + 7),
        digits(bytes, start + 8, 2),
    ) {
        let date = NaiveDate::from_ymd_opt(y as i32, m, d).ok_or_else(|| {
            malformed(
                src,
                start,
                format!("invalid date: {}", &src[start..start + 10]),
            )
        })?;
        let i = start + 10;
        if !matches!(bytes.get(i), Some(b'T' | b't')) {
            return Ok((Tok::Date(date), i));
        }
        return lex_datetime(src, date, i + 1);
    }
    let mut i = start;
    if matches!(bytes[i], b'-' | b'+') {
        i += 1;
    }
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    if bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        let c = src[i..].chars().next().unwrap_or(' ');
        return Err(malformed(
            src,
            i,
            format!("no viable alternative at character '{c}'"),
        ));
    }
    let n: f64 = src[start..i]
        .parse()
        .map_err(|_| malformed(src, start, format!("invalid number: {}", &src[start..i])))?;
    Ok((Tok::Num(n), i))
}

/// `hh:mm:ss[.f{1,9}](Z|±hh:mm|±hhmm)` after the `T`. A zone is mandatory: a `+` that a client
/// forgot to URL-encode arrives as a space, and Salesforce rejects the query at that character.
fn lex_datetime(src: &str, date: NaiveDate, at: usize) -> Result<(Tok, usize), SfError> {
    let bytes = src.as_bytes();
    let bad = |i: usize| {
        let c = src.get(i..).and_then(|r| r.chars().next());
        match c {
            Some(c) => malformed(src, i, format!("no viable alternative at character '{c}'")),
            None => malformed(src, i, "unexpected token: <EOF>".to_string()),
        }
    };
    let (Some(h), Some(b':'), Some(mi), Some(b':'), Some(s)) = (
        digits(bytes, at, 2),
        bytes.get(at + 2),
        digits(bytes, at + 3, 2),
        bytes.get(at + 5),
        digits(bytes, at + 6, 2),
    ) else {
        let mut i = at;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b':') {
            i += 1;
        }
        return Err(bad(i));
    };
    let time = NaiveTime::from_hms_opt(h, mi, s).ok_or_else(|| bad(at))?;
    let mut i = at + 8;
    if bytes.get(i) == Some(&b'.') {
        let n = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n == 0 || n > 9 {
            return Err(bad(i + 1 + n.min(9)));
        }
        i += 1 + n;
    }
    let offset_secs: i64 = match bytes.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(bytes, i + 1, 2).ok_or_else(|| bad(i + 1))?;
            let (om, len) = if bytes.get(i + 3) == Some(&b':') {
                (digits(bytes, i + 4, 2).ok_or_else(|| bad(i + 4))?, 6)
            } else {
                (digits(bytes, i + 3, 2).ok_or_else(|| bad(i + 3))?, 5)
            };
            if oh > 23 || om > 59 {
                return Err(bad(i + 1));
            }
            i += len;
            let secs = (oh * 3600 + om * 60) as i64;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return Err(bad(i)),
    };
    if bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return Err(bad(i));
    }
    let local = date.and_time(time).and_utc().timestamp();
    Ok((Tok::DateTime(local - offset_secs), i))
}
