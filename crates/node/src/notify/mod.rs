//! Accelerated polling (`"sf_notify_enabled": true`, SPEC.md §4): one change-event subscription
//! per connection, on `/data/ChangeEvents`, for every mapping that asks for it.
//!
//! An event says where to look, never what is there: the records it names are read now by Id
//! (queryAll, so deletes are seen) and merged through the DbWriter like any poll, monotonic on
//! SystemModstamp, so reading them out of window order is safe. Gap and overflow events wake the
//! mapping's poller for a window poll at once. The interval and secondary polls go on unchanged:
//! completeness never depends on events (DESIGN.md invariant 1).
//!
//! `hub.rs` is what the engine holds per connection (the mappings that take events, and the
//! subscription task); `subscription.rs` runs the stream; `fetch.rs` reads and merges the
//! records of a batch of events with the replay id they reach.

mod fetch;
mod hub;
mod subscription;

pub(crate) use hub::{NotifyHub, Registration};
