"""Publishes one serialized `fleetset.v1.Frame` (read from a file) on `Ingest/Publish` over a
grpcio secure channel: the server verified against CA_FILE, and with CERT KEY a client
certificate for mTLS. Prints JSON: the status code the stream ended with and the acks received
(serialized `fleetset.v1.Ack`, hex).

Usage: grpc_tls_publish.py HOST:PORT CA_FILE FRAME_FILE [CERT_FILE KEY_FILE]
"""
import json
import sys

import grpc


def read(path):
    with open(path, "rb") as f:
        return f.read()


target, ca, frame = sys.argv[1], read(sys.argv[2]), read(sys.argv[3])
cert = read(sys.argv[4]) if len(sys.argv) > 5 else None
key = read(sys.argv[5]) if len(sys.argv) > 5 else None
creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
channel = grpc.secure_channel(target, creds)
publish = channel.stream_stream(
    "/fleetset.v1.Ingest/Publish",
    request_serializer=lambda b: b,
    response_deserializer=lambda b: b,
)
acks = []
code = "OK"
try:
    for ack in publish(iter([frame]), timeout=20):
        acks.append(ack.hex())
except grpc.RpcError as e:
    code = e.code().name
print(json.dumps({"code": code, "acks": acks}))
