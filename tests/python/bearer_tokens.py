"""Clients we did not write against fleetset's bearer tokens (`authorization: Bearer …`).

usage:
  bearer_tokens.py sdk-push OTLP_ENDPOINT TOKEN
      The OpenTelemetry Python SDK exporter with headers={"authorization": "Bearer TOKEN"}
      exports one gauge; prints {"result": "SUCCESS" | "FAILURE"}.
  bearer_tokens.py otlp-status OTLP_HOST:PORT TOKEN
      A raw grpcio MetricsService/Export (stubs of the opentelemetry-proto package) with that
      metadata ("-": none); prints {"code": "OK" | grpc status name}.
  bearer_tokens.py live GRPC_HOST:PORT TOKEN SECONDS [site=VALUE] [since:SECONDS_AGO]
      grpcio Live/Subscribe (stubs generated from our .proto) with that metadata, for SECONDS,
      asking for those labels and, with since:, stored history first; prints
      {"sites": [...], "historical": N, "code": "OK" | "DEADLINE_EXCEEDED" | status name}.
  bearer_tokens.py fleet-agents GRPC_HOST:PORT TOKEN [site=VALUE]
      grpcio Fleet/ListAgents (stubs generated from our .proto) with that metadata and selector;
      prints {"agents": [{"agent_id", "labels", "config_hash", "state"}...], "code": ...}.
"""
import json
import os
import sys
import tempfile
import time

import grpc


def metadata(token):
    return [] if token == "-" else [("authorization", f"Bearer {token}")]


def sdk_push(endpoint, token):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExportResult, InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"host.name": "token-host"}),
                             metric_readers=[reader])
    provider.get_meter("fleetset-tokens").create_gauge("app.temperature").set(21.5)
    data = reader.get_metrics_data()
    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10,
                                  headers={"authorization": f"Bearer {token}"})
    result = exporter.export(data)
    exporter.shutdown()
    print(json.dumps({"result": "SUCCESS" if result == MetricExportResult.SUCCESS else "FAILURE"}))


def otlp_status(endpoint, token):
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
    stub = metrics_service_pb2_grpc.MetricsServiceStub(grpc.insecure_channel(endpoint))
    try:
        stub.Export(metrics_service_pb2.ExportMetricsServiceRequest(), timeout=10,
                    metadata=metadata(token))
        print(json.dumps({"code": "OK"}))
    except grpc.RpcError as e:
        print(json.dumps({"code": e.code().name}))


def fleetset_stubs():
    """Our .proto compiled with grpcio-tools: (messages, services)."""
    proto_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "proto")
    out = tempfile.mkdtemp(prefix="fleetset-pb-")
    from grpc_tools import protoc
    if protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                    "fleetset/v1/fleetset.proto"]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    from fleetset.v1 import fleetset_pb2, fleetset_pb2_grpc
    return fleetset_pb2, fleetset_pb2_grpc


def fleet_agents(endpoint, token, labels):
    pb, pb_grpc = fleetset_stubs()
    stub = pb_grpc.FleetStub(grpc.insecure_channel(endpoint))
    request = pb.ListAgentsRequest(selector=dict(l.split("=", 1) for l in labels))
    try:
        reply = stub.ListAgents(request, timeout=10, metadata=metadata(token))
        agents = [{"agent_id": a.agent_id, "labels": dict(a.labels), "config_hash": a.config_hash,
                   "state": a.state} for a in reply.agents]
        print(json.dumps({"agents": agents, "code": "OK"}))
    except grpc.RpcError as e:
        print(json.dumps({"agents": [], "code": e.code().name}))


def live(endpoint, token, seconds, labels):
    pb, pb_grpc = fleetset_stubs()
    stub = pb_grpc.LiveStub(grpc.insecure_channel(endpoint))
    since = [float(a.split(":", 1)[1]) for a in labels if a.startswith("since:")]
    request = pb.SubscribeRequest(
        labels=dict(l.split("=", 1) for l in labels if not l.startswith("since:")),
        since_ms=int((time.time() - since[0]) * 1000) if since else 0)
    sites, historical, code = [], 0, "OK"
    try:
        for msg in stub.Subscribe(request, timeout=seconds, metadata=metadata(token)):
            if msg.WhichOneof("event") == "snapshot":
                sites.append(msg.snapshot.host.labels.get("site", ""))
                historical += msg.historical
    except grpc.RpcError as e:
        code = e.code().name
    print(json.dumps({"sites": sites, "historical": historical, "code": code}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sdk-push":
        sdk_push(*args)
    elif cmd == "otlp-status":
        otlp_status(*args)
    elif cmd == "live":
        live(args[0], args[1], float(args[2]), args[3:])
    elif cmd == "fleet-agents":
        fleet_agents(args[0], args[1], args[2:])
    else:
        sys.exit(__doc__)
