//! gRPC operations support on the real aggregator: the standard health service answers SERVING
//! for the server and each fleetset service, and server reflection lists the services, so
//! load balancers and grpcurl-style tools work without our .proto.

use fleetset_tests::*;
use tokio_stream::StreamExt;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

#[tokio::test]
async fn health_and_reflection_answer() {
    let dir = TempDir::new("grpc-ops");
    let mut agg = Aggregator::start(dir.path(), &[]).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(agg.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "fleetset.v1.Ingest", "fleetset.v1.Live"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    assert!(health
        .check(HealthCheckRequest {
            service: "no.such.Service".into()
        })
        .await
        .is_err());

    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(resp)) = stream.next().await else {
        panic!("no reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("{resp:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "fleetset.v1.Ingest",
        "fleetset.v1.Live",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    drop((health, refl, stream));
    agg.proc.stop(std::time::Duration::from_secs(20)).unwrap();
}
