//! Why an engine command (pause, resume, reload, import) failed. The engine knows nothing of the
//! admin API: `admin/` maps these kinds to its own [`crate::admin::AdminError`].

use crate::NodeError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such connection or mapping.
    #[error("{0}")]
    NotFound(String),
    /// What was asked is wrong (an import file that does not parse); nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// Not in this state (reloading a paused connection).
    #[error("{0}")]
    NotNow(String),
    /// The mappings file could not be written.
    #[error("{message}")]
    Write {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// Carrying the command out failed (database, Salesforce, a stopped actor).
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl From<actix::MailboxError> for CommandError {
    fn from(e: actix::MailboxError) -> CommandError {
        CommandError::Node(e.into())
    }
}
