//! The one `Secret` (DESIGN.md invariant 6), from the leaf crate `driftless-secret`, which the
//! Salesforce client re-exports too: a password read from `driftless.toml` reaches the client as
//! the same type, never unwrapped on the way, and core needs no dependency on the client. It
//! also holds database URLs, which may embed a password.

pub use driftless_secret::Secret;
