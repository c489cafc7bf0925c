//! `ConfigError`: one line naming the file, the line, the key and what was expected (SPEC.md §1).

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Invalid>),
}

/// Where and what: rendered as `driftless.toml:12:1: connection.salesforce.auth: expected ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: PathBuf,
    /// 1-based, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key as written in the file (`connection.salesforce.password`); empty for syntax errors
    /// that are not about a key.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// The details of a validation or parse error (`None` for an unreadable file).
    pub fn invalid(&self) -> Option<&Invalid> {
        match self {
            ConfigError::Invalid(i) => Some(i),
            ConfigError::Read { .. } => None,
        }
    }
}

/// Turns byte offsets into lines and keys, for errors found after parsing.
pub(super) struct Source<'a> {
    pub path: &'a std::path::Path,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.line_col(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Invalid(Box::new(Invalid {
            path: self.path.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }))
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    }

    /// A toml error: its span gives the line, and the text around the span the key.
    pub fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_owned();
        let mut key = e.span().map(|s| self.key_at(s.start)).unwrap_or_default();
        for prefix in ["missing field `", "unknown field `"] {
            if let Some(rest) = message.strip_prefix(prefix) {
                let field = rest.split('`').next().unwrap_or_default();
                if !key.ends_with(field) {
                    key = if key.is_empty() {
                        field.to_owned()
                    } else {
                        format!("{key}.{field}")
                    };
                }
            }
        }
        self.error(e.span(), &key, message)
    }

    /// The dotted key at `offset`: the enclosing `[table]` header plus the `key =` on that line.
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = self.text[line_start..line_end].trim();
        let header = self.text[..line_end]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| {
                let l = l.split('#').next().unwrap_or_default().trim();
                l.trim_matches(|c| c == '[' || c == ']').trim().to_owned()
            })
            .unwrap_or_default();
        if line.starts_with('[') {
            return header;
        }
        let Some((k, _)) = line.split_once('=') else {
            return header;
        };
        let k = k.trim().trim_matches('"');
        if header.is_empty() {
            k.to_owned()
        } else {
            format!("{header}.{k}")
        }
    }
}
