//! The workspace's one `Secret` (crate `driftless-secret`), re-exported: credentials in
//! `ClientConfig` are the same type the config loader reads, never unwrapped on the way.

pub use driftless_secret::Secret;
