//! The unary rpcs of `eventbus.v1.PubSub` and the wiring of the streaming ones.

use super::auth::{self, authenticate, new_rpc_id};
use super::proto::{self, pub_sub_server::PubSub};
use crate::http::AppState;
use actix_web::web;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct PubSubService {
    state: web::Data<AppState>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl PubSubService {
    pub fn new(
        state: web::Data<AppState>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> PubSubService {
        PubSubService { state, stopping }
    }
}

/// The object a topic is about (`None` for `/data/ChangeEvents`), or NOT_FOUND.
pub(super) fn resolve_topic(
    state: &AppState,
    topic: &str,
    rpc_id: &str,
) -> Result<Option<usize>, Status> {
    state.cdc.schemas.topic_object(topic).ok_or_else(|| {
        auth::error(
            Code::NotFound,
            auth::TOPIC_NOT_FOUND,
            &format!("Topic {topic} does not exist or you don't have access to it."),
            rpc_id,
        )
    })
}

#[tonic::async_trait]
impl PubSub for PubSubService {
    type SubscribeStream = BoxStream<proto::FetchResponse>;
    type PublishStreamStream = BoxStream<proto::PublishResponse>;
    type ManagedSubscribeStream = BoxStream<proto::ManagedFetchResponse>;

    async fn subscribe(
        &self,
        request: Request<Streaming<proto::FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let rpc_id = new_rpc_id();
        authenticate(&self.state, request.metadata(), &rpc_id)?;
        let stream = super::subscribe::start(
            self.state.clone(),
            request.into_inner(),
            rpc_id,
            self.stopping.clone(),
        )
        .await?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_schema(
        &self,
        request: Request<proto::SchemaRequest>,
    ) -> Result<Response<proto::SchemaInfo>, Status> {
        let rpc_id = new_rpc_id();
        authenticate(&self.state, request.metadata(), &rpc_id)?;
        let id = &request.get_ref().schema_id;
        let schema = self.state.cdc.schemas.by_id(id).ok_or_else(|| {
            auth::error(
                Code::NotFound,
                "sfdc.platform.eventbus.grpc.schema.notfound",
                &format!("Schema {id} does not exist."),
                &rpc_id,
            )
        })?;
        Ok(Response::new(proto::SchemaInfo {
            schema_json: schema.json.clone(),
            schema_id: schema.schema_id.clone(),
            rpc_id,
        }))
    }

    async fn get_topic(
        &self,
        request: Request<proto::TopicRequest>,
    ) -> Result<Response<proto::TopicInfo>, Status> {
        let rpc_id = new_rpc_id();
        authenticate(&self.state, request.metadata(), &rpc_id)?;
        let topic = request.get_ref().topic_name.clone();
        let object = resolve_topic(&self.state, &topic, &rpc_id)?;
        // A multi-entity channel carries events of several schemas; each event names its own.
        let schema_id = object
            .map(|o| self.state.cdc.schemas.by_object[o].schema_id.clone())
            .unwrap_or_default();
        Ok(Response::new(proto::TopicInfo {
            topic_name: topic,
            tenant_guid: self.state.org.org_id.clone(),
            can_publish: false,
            can_subscribe: true,
            schema_id,
            rpc_id,
        }))
    }

    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        let rpc_id = new_rpc_id();
        authenticate(&self.state, request.metadata(), &rpc_id)?;
        let topic = &request.get_ref().topic_name;
        resolve_topic(&self.state, topic, &rpc_id)?;
        // Change events are published by the platform only.
        Err(auth::error(
            Code::PermissionDenied,
            auth::PUBLISH_NOT_ALLOWED,
            &format!("Publishing to {topic} is not allowed."),
            &rpc_id,
        ))
    }

    async fn publish_stream(
        &self,
        _request: Request<Streaming<proto::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        Err(Status::unimplemented("PublishStream is not simulated"))
    }

    async fn managed_subscribe(
        &self,
        _request: Request<Streaming<proto::ManagedFetchRequest>>,
    ) -> Result<Response<Self::ManagedSubscribeStream>, Status> {
        Err(Status::unimplemented("ManagedSubscribe is not simulated"))
    }
}
