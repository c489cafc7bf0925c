//! The admin endpoints on `[coordinator].listen` (SPEC.md §6): every rpc of `AdminService`
//! (proto/admin.proto) as protobuf over HTTP, status as JSON and as a page, and Prometheus
//! metrics. Everything but `/metrics` needs `Authorization: Bearer <admin_token>`.
//!
//! [`service`] speaks the protocol against an [`AdminBackend`], "the engine" seen from outside:
//! [`local::LocalBackend`] is the engine of this process (`driftless run`); a cluster
//! coordinator implements the same trait by asking its workers.

mod error;
mod http;
pub mod local;
pub mod service;
mod tls;
mod views;

pub use error::{AdminError, AdminErrorKind};
pub use http::{serve, start_listener};
pub use service::AdminBackend;
