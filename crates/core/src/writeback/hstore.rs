//! hstore text (`"k"=>"v", "k2"=>NULL`), the format of `_trigger_log.values` and `.old` (§4.1).
//! The triggers write it without the extension; this reads it back for the WriteBack actor.

use std::collections::BTreeMap;

/// Parses hstore text. `None` on malformed input; the caller knows which entry it came from.
pub fn parse_hstore(text: &str) -> Option<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        skip_ws(&mut chars);
        if chars.peek().is_none() {
            return Some(out);
        }
        let key = quoted(&mut chars)?;
        skip_ws(&mut chars);
        if chars.next()? != '=' || chars.next()? != '>' {
            return None;
        }
        skip_ws(&mut chars);
        let value = if chars.peek() == Some(&'"') {
            Some(quoted(&mut chars)?)
        } else {
            let word: String =
                std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphabetic())).collect();
            if !word.eq_ignore_ascii_case("null") {
                return None;
            }
            None
        };
        out.insert(key, value);
        skip_ws(&mut chars);
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// The inverse of [`parse_hstore`], in the triggers' exact format.
pub fn encode_hstore<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{}=>{}", quote(k), quote(v)),
            None => format!("{}=>NULL", quote(k)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    if chars.next()? != '"' {
        return None;
    }
    let mut s = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(s),
            '\\' => s.push(chars.next()?),
            c => s.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_quotes_backslashes_and_nulls() {
        let text = encode_hstore([
            ("name", Some(r#"a "b" \c =>, d"#)),
            ("industry", None),
            ("empty", Some("")),
        ]);
        assert_eq!(
            text,
            r#""name"=>"a \"b\" \\c =>, d", "industry"=>NULL, "empty"=>"""#
        );
        let m = parse_hstore(&text).unwrap();
        assert_eq!(m["name"].as_deref(), Some(r#"a "b" \c =>, d"#));
        assert_eq!(m["industry"], None);
        assert_eq!(m["empty"].as_deref(), Some(""));
        assert_eq!(parse_hstore("").unwrap().len(), 0);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            r#""a"=>"#,
            r#""a"=>x"#,
            r#""a" "b""#,
            r#""a"=>"b" "c"=>"d""#,
            "a=>b",
        ] {
            assert!(parse_hstore(bad).is_none(), "{bad:?} accepted");
        }
    }
}
