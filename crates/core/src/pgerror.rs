//! Postgres errors with their content.
//!
//! `tokio_postgres::Error`'s own Display is "db error" for every error the server sends, which
//! tells an operator nothing; [`describe`] renders what the server said: SQLSTATE, message,
//! detail, hint, and the schema, table, column and constraint where it names them.

use std::error::Error as _;

/// One line: `23505: duplicate key value violates unique constraint "x" (detail: ...; table
/// salesforce.account, constraint x)`. Errors that did not come from the server (a closed
/// connection, a refused connect) are rendered with their causes.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let more = s.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = s.source();
        }
        return text;
    };
    let mut text = format!("{}: {}", db.code().code(), db.message());
    let mut extra: Vec<String> = Vec::new();
    if let Some(d) = db.detail() {
        extra.push(format!("detail: {d}"));
    }
    if let Some(h) = db.hint() {
        extra.push(format!("hint: {h}"));
    }
    match (db.schema(), db.table()) {
        (Some(s), Some(t)) => extra.push(format!("table {s}.{t}")),
        (None, Some(t)) => extra.push(format!("table {t}")),
        _ => {}
    }
    if let Some(c) = db.column() {
        extra.push(format!("column {c}"));
    }
    if let Some(c) = db.constraint() {
        extra.push(format!("constraint {c}"));
    }
    if let Some(w) = db.where_() {
        extra.push(format!("where: {}", w.lines().next().unwrap_or(w)));
    }
    if !extra.is_empty() {
        text.push_str(" (");
        text.push_str(&extra.join("; "));
        text.push(')');
    }
    // Detail lines can hold newlines (key values with CR/LF): keep it one line.
    text.replace(['\n', '\r'], " ")
}
