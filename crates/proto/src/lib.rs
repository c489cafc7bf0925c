//! Driftless's wire types, generated from `/proto` by prost, and the helpers to put them in HTTP
//! bodies (`application/x-protobuf`).
//!
//! This is the only crate that sees prost types (DESIGN.md "Shape"): the rest of the workspace
//! uses [`cluster`], [`admin`], [`encode`], [`decode`] and [`Rpc`], never `prost` itself.
//!
//! Each service has a module of marker types, one per rpc (e.g.
//! [`cluster::coordinator_service::Heartbeat`]), that pairs the request and reply types with the
//! HTTP path (`/<package>.<Service>/<Method>`, gRPC's naming, POST).

// Generated code: its doc comments are the .proto's comments, which rustdoc lints do not expect.
#[allow(clippy::doc_lazy_continuation, clippy::doc_overindented_list_items)]
mod generated {
    pub mod driftless {
        pub mod cluster {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/driftless.cluster.v1.rs"));
            }
        }
        pub mod admin {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/driftless.admin.v1.rs"));
            }
        }
    }
}

/// Coordinator <-> worker (`proto/cluster.proto`, package `driftless.cluster.v1`).
pub use generated::driftless::cluster::v1 as cluster;

/// ctl <-> coordinator (`proto/admin.proto`, package `driftless.admin.v1`).
pub use generated::driftless::admin::v1 as admin;

/// The protobuf decode error, re-exported so callers need no `prost` dependency.
pub use prost::DecodeError;

/// `Content-Type` (and `Accept`) of every request and reply body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Any generated message.
pub trait Message: prost::Message + Default {}

impl<M: prost::Message + Default> Message for M {}

/// One rpc of a service: what to POST where, and what comes back.
pub trait Rpc {
    type Request: Message;
    type Reply: Message;
    /// `/<package>.<Service>/<Method>`, e.g. `/driftless.cluster.v1.CoordinatorService/Heartbeat`.
    const PATH: &'static str;
}

/// The body for a request or reply.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    msg.encode_to_vec()
}

/// Parses a body. Unknown fields are skipped (proto3), so an older peer reads a newer one's
/// messages.
pub fn decode<M: Message>(body: &[u8]) -> Result<M, DecodeError> {
    M::decode(body)
}

#[cfg(test)]
mod tests;
