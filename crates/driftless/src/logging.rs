//! Logs go to stderr: readable by default, JSON lines with `DRIFTLESS_LOG_FORMAT=json`, filtered
//! by `RUST_LOG` (default given by the command). Secrets never reach a log line because they are
//! `Secret`s everywhere (ARCHITECTURE.md), not because of a filter here.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// `DRIFTLESS_LOG_FORMAT=json` (any case) selects JSON lines; anything else is text.
    pub fn from_env_value(value: Option<&str>) -> Format {
        if value.is_some_and(|v| v.eq_ignore_ascii_case("json")) {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// Installs the process's subscriber; `default` is the filter when `RUST_LOG` is unset.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let format = Format::from_env_value(std::env::var("DRIFTLESS_LOG_FORMAT").ok().as_deref());
    // Colours only on a terminal: in a file or a CI log they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing::subscriber::set_global_default(subscriber(format, filter, ansi, std::io::stderr))
        .expect("the only subscriber");
}

fn subscriber<W>(
    format: Format,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        Format::Json => Box::new(builder.json().finish()),
        Format::Text => Box::new(builder.with_ansi(ansi).finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn log_with(format: Format) -> String {
        let buf = Buf::default();
        let sub = subscriber(format, EnvFilter::new("info"), false, buf.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(object = "Account", records = 42, "primary window committed");
            tracing::debug!("filtered out");
        });
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let text = log_with(Format::Json);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "primary window committed");
        assert_eq!(v["fields"]["records"], 42);
        assert_eq!(v["fields"]["object"], "Account");
    }

    #[test]
    fn text_format_is_one_plain_line() {
        let text = log_with(Format::Text);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("INFO"), "{text}");
        assert!(
            text.contains("primary window committed object=\"Account\" records=42"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "no colour codes: {text:?}");
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }

    #[test]
    fn only_json_selects_json() {
        assert_eq!(Format::from_env_value(Some("JSON")), Format::Json);
        assert_eq!(Format::from_env_value(Some("text")), Format::Text);
        assert_eq!(Format::from_env_value(None), Format::Text);
    }
}
