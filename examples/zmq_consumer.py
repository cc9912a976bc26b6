#!/usr/bin/env python3
"""Consume fleetset's live windows from the aggregator's ZeroMQ PUB socket (pyzmq + msgpack).

Each message has three parts:
  1. topic   b"snapshot.<agent_id>"  (subscribe to b"snapshot." for all agents)
  2. header  protobuf fleetset.v1.FrameHeader (encoding, compression, agent_id, seq, window, sha256)
  3. payload the encoded snapshot exactly as the agent sent it; SHA-256(payload) == header sha256

This example checks the SHA-256 and decodes MessagePack payloads with the `msgpack` package
(Protobuf payloads decode with the message classes grpc_tools.protoc generates from
proto/fleetset/v1/fleetset.proto). The header is decoded with a few lines of protobuf wire
parsing so that the example needs no generated code. Prints one JSON line per window.

    python3 examples/zmq_consumer.py --endpoint tcp://127.0.0.1:5556 --agent web-1 --count 10
"""
import argparse
import hashlib
import json

import msgpack
import zmq


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def frame_header(buf):
    """Decodes fleetset.v1.FrameHeader: {field name: value} for the fields we use."""
    names = {1: "version", 2: "encoding", 3: "compression", 4: "agent_id", 5: "seq",
             6: "window_start_ms", 7: "window_end_ms", 8: "payload_sha256", 9: "hmac_sha256"}
    out, i = {}, 0
    while i < len(buf):
        key, i = varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = bytes(buf[i:i + n]), i + n
        else:
            raise ValueError(f"unexpected wire type {wire}")
        out[names.get(field, field)] = value
    out["agent_id"] = out.get("agent_id", b"").decode()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5556")
    ap.add_argument("--agent", default="", help="only this agent (topic prefix filter)")
    ap.add_argument("--count", type=int, default=0, help="stop after N windows (0: forever)")
    ap.add_argument("--timeout-ms", type=int, default=30000)
    args = ap.parse_args()

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVTIMEO, args.timeout_ms)
    sock.connect(args.endpoint)
    topic = b"snapshot." + args.agent.encode() if args.agent else b"snapshot."
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    seen = 0
    while not args.count or seen < args.count:
        topic, header_bytes, payload = sock.recv_multipart()
        header = frame_header(header_bytes)
        ok = hashlib.sha256(payload).digest() == header.get("payload_sha256")
        line = {"topic": topic.decode(), "agent_id": header["agent_id"], "seq": header.get("seq", 0),
                "window_start_ms": header.get("window_start_ms", 0), "sha256_ok": ok}
        if header.get("encoding") == 1 and header.get("compression", 0) == 0:  # MessagePack
            snap = msgpack.unpackb(payload, raw=False)
            line["metrics"] = sorted(snap["data"])
            line["cpu_percent_mean"] = snap.get("stats", {}).get("cpu_percent", {}).get("mean")
        print(json.dumps(line), flush=True)
        seen += 1


if __name__ == "__main__":
    main()
