//! gRPC ingest: the `fleetset.v1.Ingest` service. `Publish` is a bidirectional stream: the agent
//! sends frames, the aggregator answers each with one ack when it is committed, a duplicate or
//! rejected (acks may arrive out of order).

use super::{AckTo, Admission};
use fleetset_proto::pb::{self, ingest_server::Ingest};
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

/// The `Ingest` service.
pub struct IngestService {
    /// Shared verification and store hand-off.
    pub admission: Admission,
    /// Ends open streams on shutdown.
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type PublishStream = Pin<Box<dyn Stream<Item = Result<pb::Ack, Status>> + Send>>;

    async fn publish(
        &self,
        request: Request<Streaming<pb::Frame>>,
    ) -> Result<Response<Self::PublishStream>, Status> {
        let mut frames = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let admission = self.admission.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    f = frames.message() => f,
                };
                match next {
                    Ok(Some(frame)) => {
                        if !admission.admit(frame, AckTo::Grpc(tx.clone())).await {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(%status, "publish stream ended");
                        break;
                    }
                }
            }
        });
        let stream = UnboundedReceiverStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}
