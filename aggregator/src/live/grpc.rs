//! gRPC `fleetset.v1.Live/Subscribe`: a server stream of the live windows matching the request,
//! each [`Item`] of a [`subscription`](super::subscription) (filters, token selector, `since`
//! history then live, the bounded queue and lag accounting live there) as one
//! `SubscribeResponse`.
//!
//! Errors: no or an unknown token UNAUTHENTICATED, a token without scope `subscribe`
//! PERMISSION_DENIED, `live.max_subscribers` streams open RESOURCE_EXHAUSTED (counted
//! `live_subscribers_refused`); a subscriber disconnected for falling behind
//! (`live.subscriber_overflow = "disconnect"`) RESOURCE_EXHAUSTED, a history that cannot be read
//! INTERNAL, a stopping store UNAVAILABLE.

use super::subscription::{End, Refused, Subscriptions};
use fleetset_proto::pb::{self, live_server::Live};
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// The `Live` service.
pub struct LiveService {
    /// Admission, filters, history and lag (shared with the WebSocket stream).
    pub subscriptions: Subscriptions,
}

impl From<Refused> for Status {
    fn from(r: Refused) -> Status {
        match r {
            Refused::Auth(e) => e.into(),
            Refused::Full => Status::resource_exhausted(
                "live.max_subscribers Subscribe streams are open; retry later",
            ),
        }
    }
}

impl From<End> for Status {
    fn from(e: End) -> Status {
        match e {
            End::Overflow(_) => Status::resource_exhausted(e.to_string()),
            End::History(_) => Status::internal(e.to_string()),
            End::StoreStopping | End::Upstream(_) => Status::unavailable(e.to_string()),
        }
    }
}

#[tonic::async_trait]
impl Live for LiveService {
    type SubscribeStream =
        Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let items = self
            .subscriptions
            .open(authorization, request.get_ref(), "grpc")?;
        let stream = ReceiverStream::new(items).map(|r| r.map(|i| i.to_pb()).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}
