//! One error type for the engine, with a kind that decides what the caller does next.
//!
//! Salesforce errors keep the client's own [`salesforce::ErrorKind`], so its policy table
//! ([`salesforce::ErrorKind::action`]) stays the one place that says how to react to them; the
//! kinds added here cover the database, fencing and configuration.

use std::time::Duration;

use driftless_core::state::StateError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The config, a mapping or the org's describe does not allow the sync to start: exit 2.
    /// `message` is whole (it already says what `source` says), because it is what the user
    /// reads; `source` keeps the underlying error for whoever inspects it.
    #[error("{message}")]
    Config {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("salesforce: {0}")]
    Salesforce(#[from] salesforce::Error),
    #[error("postgres: {}", driftless_core::pgerror::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    /// Another owner took the mapping: stop writing, never retry (DESIGN.md invariant 2).
    #[error("{0}")]
    Fenced(String),
    #[error("{0}")]
    State(String),
    /// A part of a parallel load ended before it was complete, because another part failed (that
    /// part's error is the one reported) or its reader went away; nothing of it was committed.
    #[error("{0} was interrupted")]
    Interrupted(&'static str),
    /// The actor that should have answered is gone (shutdown).
    #[error("{0} stopped")]
    Stopped(&'static str),
}

/// What a poller does about a failed poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try the same window again after a backoff delay.
    Backoff,
    /// Read the window in smaller pieces.
    SplitWindow,
    /// The org's API allowance is spent: wait at least this long.
    WaitForQuota(Duration),
    /// Give up on this mapping: fenced or shut down.
    Stop,
    /// Retrying soon cannot help (bad request, bad data); try again much later and surface it.
    Slow,
}

impl NodeError {
    /// A configuration error that is only a message.
    pub fn config(message: impl Into<String>) -> NodeError {
        NodeError::Config {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error caused by `source`; the message says `context: source`.
    pub fn config_from(context: impl std::fmt::Display, source: impl Into<BoxError>) -> NodeError {
        let source = source.into();
        NodeError::Config {
            message: format!("{context}: {source}"),
            source: Some(source),
        }
    }

    /// A configuration error caused by `source`, whose own text says everything.
    pub fn config_caused(source: impl Into<BoxError>) -> NodeError {
        let source = source.into();
        NodeError::Config {
            message: source.to_string(),
            source: Some(source),
        }
    }

    pub fn retry(&self) -> Retry {
        match self {
            NodeError::Salesforce(e) => match e.action() {
                salesforce::Action::Retry | salesforce::Action::Reauthenticate => Retry::Backoff,
                salesforce::Action::SplitWindow => Retry::SplitWindow,
                salesforce::Action::WaitForQuota => {
                    Retry::WaitForQuota(e.retry_after().unwrap_or(Duration::from_secs(300)))
                }
                salesforce::Action::Fail => Retry::Slow,
            },
            NodeError::Db(_) | NodeError::Pool(_) | NodeError::Interrupted(_) => Retry::Backoff,
            NodeError::Fenced(_) | NodeError::Stopped(_) => Retry::Stop,
            NodeError::Config { .. } | NodeError::State(_) => Retry::Slow,
        }
    }
}

impl From<StateError> for NodeError {
    fn from(e: StateError) -> NodeError {
        match e {
            StateError::Fenced { .. } => NodeError::Fenced(e.to_string()),
            StateError::Db(db) => NodeError::Db(db),
            other => NodeError::State(other.to_string()),
        }
    }
}

impl From<actix::MailboxError> for NodeError {
    fn from(_: actix::MailboxError) -> NodeError {
        NodeError::Stopped("actor")
    }
}

impl From<deadpool_postgres::PoolError> for NodeError {
    fn from(e: deadpool_postgres::PoolError) -> NodeError {
        match e {
            deadpool_postgres::PoolError::Backend(db) => NodeError::Db(db),
            other => NodeError::Pool(other.to_string()),
        }
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;
