//! Salesforce's Pub/Sub API (`eventbus.v1.PubSub`), generated once from
//! `/proto/pubsub_api.proto` for both sides: the simulator serves it (`pub_sub_server`) and the
//! client crate subscribes with it (`pub_sub_client`). Nothing else compiles that proto.

// Generated code: its doc comments are the .proto's comments, which rustdoc lints do not expect.
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("eventbus.v1");
