"""Sends bytes that are not a `fleetset.v1.Frame` on a real `Ingest/Publish` stream with grpcio
(identity serializer), and prints the status code the stream ended with as JSON.

Usage: grpc_junk_publish.py HOST:PORT
"""
import json
import sys

import grpc

channel = grpc.insecure_channel(sys.argv[1])
publish = channel.stream_stream(
    "/fleetset.v1.Ingest/Publish",
    request_serializer=lambda b: b,
    response_deserializer=lambda b: b,
)
acks = 0
code = "OK"
try:
    for _ in publish(iter([b"\xff\xff\xff\xff not a protobuf frame \xff"]), timeout=20):
        acks += 1
except grpc.RpcError as e:
    code = e.code().name
print(json.dumps({"code": code, "acks": acks}))
