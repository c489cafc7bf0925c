//! Driftless's process roles: the actors that keep every mapped Salesforce object in its Postgres
//! table and prove nothing drifted (DESIGN.md "Shape").
//!
//! Inside a process, per connection: a [`db_writer::DbWriter`] that owns the connection's pool and
//! is the only code touching the customer's database, a [`secondary_pool::SecondaryPollPool`] that
//! bounds secondary polls, and one [`mapping_poller::MappingPoller`] per mapping. [`run`] starts
//! them (plus the admin endpoints) and returns a handle; [`verify`] compares Salesforce and
//! Postgres record by record. Everything here must run inside an actix `System`.

pub mod admin;
pub mod dashboard;
pub mod db_writer;
pub mod engine;
pub mod error;
mod formula_refresh;
mod fresh_copy;
mod initial_load;
mod mapping_ctx;
pub mod mapping_poller;
pub mod metrics;
mod notify;
mod parallel_load;
mod primary_poll;
pub mod rows;
pub mod run;
mod salesforce_client;
pub mod secondary_pool;
pub mod session_sampler;
pub mod shutdown;
pub mod status;
mod validate;
pub mod verify;
pub mod writeback;

pub use error::{NodeError, Result};
pub use run::{run, NodeHandle};
pub use status::{StatusDoc, StatusView, SyncState};
pub use validate::check_mappings;

/// Engine settings that are not part of the config file (the config file holds what users set).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// This process's worker name in status.
    pub worker: String,
    /// Rows per transaction on the data path.
    pub batch_rows: usize,
    /// The longest window one primary poll reads.
    pub max_window_secs: i64,
    /// Never close a window past getUpdated's `latestDateCovered` (DESIGN.md invariant 1). Turning
    /// it off polls the way Heroku Connect's primary poll does, leaving long transactions to the
    /// secondary poll: useful only to measure what secondary polls catch.
    pub honor_latest_date_covered: bool,
    /// Serve the admin endpoints on `[coordinator].listen`.
    pub serve_admin: bool,
    /// Owner epochs handed out by a cluster coordinator, by (connection, object): a mapping found
    /// here is claimed with exactly this epoch, so an assignment the coordinator has since moved
    /// elsewhere can never win the claim back. Empty (`driftless run`): each start claims the next
    /// epoch after the stored one.
    pub assigned_epochs: std::collections::BTreeMap<(String, String), i64>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            worker: "w1".to_owned(),
            batch_rows: 50_000,
            max_window_secs: 3600,
            honor_latest_date_covered: true,
            serve_admin: true,
            assigned_epochs: Default::default(),
        }
    }
}
