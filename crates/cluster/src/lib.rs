//! Driftless as a cluster (DESIGN.md "Across processes"): one coordinator that assigns mappings to
//! any number of worker processes, keeps their leases and the owner epochs in the state database,
//! and answers the admin messages; and the worker process, which runs what it is assigned with the
//! same actors `driftless run` uses (`driftless_node`).
//!
//! Workers have no listen address and no config file: everything the coordinator has to tell one
//! rides on the reply to its heartbeat, including the settings of the connections it runs
//! ([`spec`]). Protobuf over HTTP ([`rpc`]), message types from `driftless_proto`.

pub mod coordinator;
pub mod error;
pub mod rpc;
pub mod spec;
pub mod stats;
pub mod worker;

pub use error::{ClusterError, Result};
