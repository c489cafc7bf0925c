//! The CSV of Bulk 2.0 ingest uploads, read as strictly as Salesforce reads it
//! (reference/salesforce-api.md §4; "Prepare CSV Files"): the job's delimiter and line ending
//! only, quotes only around a whole field, `""` for a quote inside one, and every row as wide as
//! the header. A violation fails the whole upload with Salesforce's message, not one row.

/// Parses `data` into rows of fields (the header is row 0). `eol` is `"\n"` or `"\r\n"`.
pub fn parse(data: &[u8], delimiter: char, eol: &str) -> Result<Vec<Vec<String>>, String> {
    let text = std::str::from_utf8(data)
        .map_err(|_| "ClientInputError : Invalid UTF-8 in the uploaded data".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let setting = if eol == "\n" { "LF" } else { "CRLF" };
    let bad_eol = || {
        format!("ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {setting}")
    };
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    // The field began with a quote and it was closed: only a delimiter or a line end may follow.
    let mut closed = false;
    let mut at_field_start = true;
    let line_no = |rows: &Vec<Vec<String>>| rows.len() + 1;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                    closed = true;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            '"' => {
                return Err(format!(
                    "ClientInputError : Failed to parse CSV: unescaped quote in a field on line {}",
                    line_no(&rows)
                ))
            }
            c if c == delimiter => {
                row.push(std::mem::take(&mut field));
                closed = false;
                at_field_start = true;
            }
            '\r' => {
                if eol == "\r\n" && chars.peek() == Some(&'\n') {
                    chars.next();
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                    closed = false;
                    at_field_start = true;
                } else {
                    return Err(bad_eol());
                }
            }
            '\n' => {
                if eol == "\n" {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                    closed = false;
                    at_field_start = true;
                } else {
                    return Err(bad_eol());
                }
            }
            _ if closed => {
                return Err(format!(
                    "ClientInputError : Failed to parse CSV: characters after a closing quote on line {}",
                    line_no(&rows)
                ))
            }
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err(format!(
            "ClientInputError : Failed to parse CSV: unterminated quoted field on line {}",
            line_no(&rows)
        ));
    }
    if !at_field_start || !row.is_empty() || closed {
        row.push(field);
        rows.push(row);
    }
    let Some(header) = rows.first() else {
        return Err("ClientInputError : No data was uploaded".into());
    };
    let width = header.len();
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(format!(
            "ClientInputError : Failed to parse CSV: line {} has {} columns, the header has {width}",
            i + 1,
            r.len()
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_delimiters_and_line_endings() {
        let rows = parse(b"Name,Desc\n\"a, \"\"b\"\"\",\"x\ny\"\nc,\n", ',', "\n").unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["Name".to_string(), "Desc".into()],
                vec!["a, \"b\"".into(), "x\ny".into()],
                vec!["c".into(), "".into()],
            ]
        );
        assert_eq!(
            parse(b"A|B\r\n1|2", '|', "\r\n").unwrap()[1],
            vec!["1", "2"]
        );
        let e = parse(b"A,B\r\n1,2\r\n", ',', "\n").unwrap_err();
        assert_eq!(
            e,
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"
        );
        assert!(parse(b"A,B\n1,2\n", ',', "\r\n")
            .unwrap_err()
            .ends_with("Current LineEnding setting is CRLF"));
        assert!(parse(b"A,B\n1\n", ',', "\n")
            .unwrap_err()
            .contains("line 2 has 1 columns, the header has 2"));
        assert!(parse(b"A\na\"b\n", ',', "\n")
            .unwrap_err()
            .contains("unescaped quote"));
        assert!(parse(b"A\n\"a\" b\n", ',', "\n")
            .unwrap_err()
            .contains("after a closing quote"));
        assert!(parse(b"", ',', "\n").is_err());
    }
}
