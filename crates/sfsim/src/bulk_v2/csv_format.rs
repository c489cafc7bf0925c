//! The CSV options a Bulk 2.0 job is created with (`columnDelimiter`, `lineEnding`), shared by
//! query and ingest jobs: Salesforce accepts the same names for both and answers a bad one with
//! the same message.

/// A delimiter as the job document names it, and the character.
pub type Delimiter = (&'static str, char);
/// A line ending as the job document names it, and the bytes.
pub type LineEnding = (&'static str, &'static str);

const DELIMITERS: [Delimiter; 6] = [
    ("BACKQUOTE", '`'),
    ("CARET", '^'),
    ("COMMA", ','),
    ("PIPE", '|'),
    ("SEMICOLON", ';'),
    ("TAB", '\t'),
];
const LINE_ENDINGS: [LineEnding; 2] = [("LF", "\n"), ("CRLF", "\r\n")];

/// The job's delimiter and line ending, defaulting to Salesforce's (COMMA, LF); `Err` is the
/// `INVALIDJOB` message for a name Salesforce does not know.
pub fn parse(
    delimiter: Option<&str>,
    line_ending: Option<&str>,
) -> Result<(Delimiter, LineEnding), String> {
    let delimiter = match delimiter {
        None => DELIMITERS[2],
        Some(d) => *DELIMITERS
            .iter()
            .find(|(name, _)| *name == d)
            .ok_or_else(|| format!("Invalid columnDelimiter: {d}"))?,
    };
    let line_ending = match line_ending {
        None => LINE_ENDINGS[0],
        Some(l) => *LINE_ENDINGS
            .iter()
            .find(|(name, _)| *name == l)
            .ok_or_else(|| format!("Invalid lineEnding: {l}"))?,
    };
    Ok((delimiter, line_ending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_names_and_bad_names() {
        assert_eq!(parse(None, None), Ok((("COMMA", ','), ("LF", "\n"))));
        assert_eq!(
            parse(Some("TAB"), Some("CRLF")),
            Ok((("TAB", '\t'), ("CRLF", "\r\n")))
        );
        assert_eq!(
            parse(Some("COLON"), None),
            Err("Invalid columnDelimiter: COLON".into())
        );
        assert_eq!(
            parse(None, Some("CR")),
            Err("Invalid lineEnding: CR".into())
        );
    }
}
