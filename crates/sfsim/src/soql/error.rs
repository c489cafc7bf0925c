//! Salesforce's query error shapes: the message quotes the offending line with a caret under the
//! column, then `ERROR at Row:r:Column:c`, then what went wrong.

use crate::error::SfError;

/// How much of a long line Salesforce shows before the caret; it starts the excerpt at a token
/// boundary so the caret stays near the left of the quoted text.
const MAX_LEAD: usize = 60;

/// The caret block for the error at byte offset `pos` of `src`.
pub fn caret_block(src: &str, pos: usize, what: &str) -> String {
    let pos = pos.min(src.len());
    let line_start = src[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = src[pos..].find('\n').map(|i| pos + i).unwrap_or(src.len());
    let row = src[..line_start].matches('\n').count() + 1;
    let column = src[line_start..pos].chars().count() + 1;
    let mut shown_from = line_start;
    if column - 1 > MAX_LEAD {
        // Start after the first space inside the lead window, so the excerpt begins on a token.
        let skip = column - 1 - MAX_LEAD;
        let window_start = src[line_start..pos]
            .char_indices()
            .nth(skip)
            .map_or(pos, |(i, _)| line_start + i);
        shown_from = src[window_start..pos]
            .find(' ')
            .map_or(window_start, |i| window_start + i + 1);
    }
    let spaces = src[shown_from..pos].chars().count();
    format!(
        "\n{}\n{}^\nERROR at Row:{row}:Column:{column}\n{what}",
        &src[shown_from..line_end],
        " ".repeat(spaces)
    )
}

pub fn malformed(src: &str, pos: usize, what: String) -> SfError {
    SfError::new("MALFORMED_QUERY", caret_block(src, pos, &what))
}

pub fn invalid_field(src: &str, pos: usize, what: &str) -> SfError {
    SfError::new("INVALID_FIELD", caret_block(src, pos, what))
}

pub fn no_such_column(src: &str, pos: usize, field: &str, entity: &str) -> SfError {
    invalid_field(
        src,
        pos,
        &format!(
            "No such column '{field}' on entity '{entity}'. If you are attempting to use a custom field, be sure to \
             append the '__c' after the custom field name. Please reference your WSDL or the describe call for the \
             appropriate names."
        ),
    )
}

pub fn bad_relationship(src: &str, pos: usize, rel: &str) -> SfError {
    invalid_field(
        src,
        pos,
        &format!(
            "Didn't understand relationship '{rel}' in field path. If you are attempting to use a custom \
             relationship, be sure to append the '__r' after the custom relationship name. Please reference your \
             WSDL or the describe call for the appropriate names."
        ),
    )
}

pub fn invalid_type(src: &str, pos: usize, object: &str) -> SfError {
    SfError::new(
        "INVALID_TYPE",
        caret_block(src, pos, &SfError::invalid_type(object).message),
    )
}

pub fn filter_operator(src: &str, pos: usize, what: &str) -> SfError {
    SfError::new("INVALID_QUERY_FILTER_OPERATOR", caret_block(src, pos, what))
}
