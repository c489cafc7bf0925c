#![recursion_limit = "256"]
//! The Salesforce org simulator behind `driftless sim`: an org store with commit-lag semantics,
//! a SOQL engine, the REST, SOAP, OAuth and Bulk APIs as real clients expect them, and Change
//! Data Capture over the Pub/Sub API.

pub mod bulk_v1;
pub mod bulk_v2;
pub mod cdc;
pub mod config;
pub mod control;
pub mod dataset;
pub mod error;
pub mod faults;
pub mod http;
pub mod ids;
pub mod login;
pub mod objects_file;
pub mod pubsub;
pub mod rest;
pub mod schema;
pub mod server;
pub mod sessions;
pub mod soql;
pub mod stats;
pub mod store;
pub mod thread;
pub mod tls;
pub mod value;
pub mod workload;

pub use config::{SimConfig, SimInfo};
pub use server::{start, RunningSim};
