#!/usr/bin/env python3
"""Subscribe to fleetset's live windows over gRPC from Python (grpcio).

Generates the client from proto/fleetset/v1/fleetset.proto with grpc_tools.protoc at start (into a
temporary directory), subscribes with optional agent / label / metric filters, verifies each
unfiltered window's SHA-256 against the payload the agent sent, and prints one JSON line per
window (or per Lag message).

    python3 examples/grpc_subscriber.py --endpoint 127.0.0.1:50051 --label site=eu-1 --count 10
    python3 examples/grpc_subscriber.py --agent web-1 --since-seconds 3600   # last hour, then live
    python3 examples/grpc_subscriber.py --ca ca.pem --cert me.pem --key me.key   # TLS (+ mTLS)
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto", "proto")


def generated_modules():
    out = tempfile.mkdtemp(prefix="fleetset-pb-")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}",
                      "fleetset/v1/fleetset.proto"])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    from fleetset.v1 import fleetset_pb2, fleetset_pb2_grpc  # noqa: E402
    return fleetset_pb2, fleetset_pb2_grpc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default="127.0.0.1:50051")
    ap.add_argument("--agent", action="append", default=[])
    ap.add_argument("--label", action="append", default=[], help="key=value")
    ap.add_argument("--metric", action="append", default=[])
    ap.add_argument("--since-seconds", type=float, default=0,
                    help="first replay stored windows from this many seconds ago, then go live")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--ca", help="CA file (PEM): TLS, verifying the aggregator's certificate")
    ap.add_argument("--cert", help="client certificate (PEM) for mTLS, with --key")
    ap.add_argument("--key", help="client key (PEM)")
    args = ap.parse_args()
    pb, pb_grpc = generated_modules()
    if args.ca:
        read = lambda p: open(p, "rb").read() if p else None
        creds = grpc.ssl_channel_credentials(root_certificates=read(args.ca),
                                             certificate_chain=read(args.cert), private_key=read(args.key))
        channel = grpc.secure_channel(args.endpoint, creds)
    else:
        channel = grpc.insecure_channel(args.endpoint)
    stub = pb_grpc.LiveStub(channel)
    since_ms = int((time.time() - args.since_seconds) * 1000) if args.since_seconds else 0
    request = pb.SubscribeRequest(agent_ids=args.agent, metrics=args.metric, since_ms=since_ms,
                                  labels=dict(l.split("=", 1) for l in args.label))
    seen = 0
    for msg in stub.Subscribe(request, timeout=args.timeout):
        if msg.WhichOneof("event") == "lag":
            print(json.dumps({"lag": msg.lag.skipped_windows}), flush=True)
            continue
        s = msg.snapshot
        line = {"agent_id": s.agent_id, "seq": s.seq, "start": s.start, "end": s.end,
                "metrics": sorted(m.name for m in s.series),
                "labels": dict(s.host.labels), "historical": msg.historical}
        if msg.frame_payload:
            line["sha256_ok"] = hashlib.sha256(msg.frame_payload).digest() == msg.payload_sha256
        print(json.dumps(line), flush=True)
        seen += 1
        if args.count and seen >= args.count:
            break


if __name__ == "__main__":
    main()
