//! One error type for the cluster roles; [`ClusterError::is_transient`] decides retry.

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Bad configuration or command line: exit code 2.
    #[error("{0}")]
    Config(String),
    /// The coordinator could not be reached or answered 5xx: try again.
    #[error("coordinator unreachable: {0}")]
    Unreachable(String),
    /// A wrong or missing token: retrying will not help.
    #[error("the coordinator refused the token (401): check --token / worker_token")]
    Unauthorized,
    /// Any other refusal, with the peer's explanation.
    #[error("coordinator answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("malformed protobuf message: {0}")]
    Decode(String),
    #[error("state database: {0}")]
    State(String),
    #[error(transparent)]
    Node(#[from] driftless_node::NodeError),
}

impl ClusterError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unreachable(_) | ClusterError::State(_))
    }
}

impl From<driftless_core::cluster::ClusterError> for ClusterError {
    fn from(e: driftless_core::cluster::ClusterError) -> ClusterError {
        ClusterError::State(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ClusterError {
    fn from(e: tokio_postgres::Error) -> ClusterError {
        ClusterError::State(driftless_core::pgerror::describe(&e))
    }
}

impl From<deadpool_postgres::PoolError> for ClusterError {
    fn from(e: deadpool_postgres::PoolError) -> ClusterError {
        ClusterError::State(e.to_string())
    }
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
