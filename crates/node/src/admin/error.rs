//! Why an admin request failed, and the HTTP status each kind answers with.

use crate::NodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminErrorKind {
    /// No such connection or mapping: 404.
    NotFound,
    /// The request (an import file, say) is wrong: 400, and nothing changed.
    InvalidArgument,
    /// Not now (reloading a paused connection): 409.
    FailedPrecondition,
    /// The engine is stopping or an actor is gone: 503.
    Unavailable,
    /// A database or Salesforce failure while carrying the command out: 500.
    Internal,
}

impl AdminErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            AdminErrorKind::NotFound => 404,
            AdminErrorKind::InvalidArgument => 400,
            AdminErrorKind::FailedPrecondition => 409,
            AdminErrorKind::Unavailable => 503,
            AdminErrorKind::Internal => 500,
        }
    }

    /// The `x-driftless-error-kind` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminErrorKind::NotFound => "not_found",
            AdminErrorKind::InvalidArgument => "invalid_argument",
            AdminErrorKind::FailedPrecondition => "failed_precondition",
            AdminErrorKind::Unavailable => "unavailable",
            AdminErrorKind::Internal => "internal",
        }
    }
}

/// The message is shown to the operator as is; it never carries a secret (invariant 6).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    pub kind: AdminErrorKind,
    pub message: String,
}

impl AdminError {
    pub fn new(kind: AdminErrorKind, message: impl Into<String>) -> AdminError {
        AdminError {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> AdminError {
        AdminError::new(AdminErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> AdminError {
        AdminError::new(AdminErrorKind::InvalidArgument, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> AdminError {
        AdminError::new(AdminErrorKind::FailedPrecondition, message)
    }

    pub fn internal(message: impl Into<String>) -> AdminError {
        AdminError::new(AdminErrorKind::Internal, message)
    }
}

impl AdminError {
    fn from_node(e: &NodeError) -> AdminError {
        let kind = match e {
            NodeError::Config { .. } => AdminErrorKind::InvalidArgument,
            NodeError::Stopped(_) => AdminErrorKind::Unavailable,
            _ => AdminErrorKind::Internal,
        };
        AdminError::new(kind, e.to_string())
    }
}

impl From<NodeError> for AdminError {
    fn from(e: NodeError) -> AdminError {
        AdminError::from_node(&e)
    }
}

impl From<actix::MailboxError> for AdminError {
    fn from(_: actix::MailboxError) -> AdminError {
        AdminError::new(AdminErrorKind::Unavailable, "the engine is stopping")
    }
}

impl From<crate::engine::CommandError> for AdminError {
    fn from(e: crate::engine::CommandError) -> AdminError {
        use crate::engine::CommandError as C;
        let kind = match &e {
            C::NotFound(_) => AdminErrorKind::NotFound,
            C::Invalid(_) => AdminErrorKind::InvalidArgument,
            C::NotNow(_) => AdminErrorKind::FailedPrecondition,
            C::Write { .. } => AdminErrorKind::Internal,
            C::Node(n) => return AdminError::from_node(n),
        };
        AdminError::new(kind, e.to_string())
    }
}
