"""pyzmq clients of the aggregator's CURVE-secured ZeroMQ sockets (a client we did not write).

  zmq_curve_clients.py keypair
      Prints a fresh CURVE key pair as JSON {"public": Z85, "secret": Z85}.
  zmq_curve_clients.py sub ENDPOINT SERVER_PUBLIC_FILE PUBLIC SECRET SECONDS WANT
      A SUB subscribed to "snapshot." with the given client keys ("-" for PUBLIC: no CURVE);
      receives for at most SECONDS, or until WANT messages arrived; prints JSON
      {"received": N, "topics": [...]}. The header part of each message is checked to parse.
  zmq_curve_clients.py dealer ENDPOINT SERVER_PUBLIC_FILE PUBLIC_FILE SECRET_FILE HEADER PAYLOAD
      A DEALER with the given client keys sends the two-part message [HEADER, PAYLOAD] (file
      contents) and waits up to 20 s for one ack; prints JSON {"acks": [hex, ...]}.
"""
import json
import sys
import time

import zmq


def text(path):
    with open(path) as f:
        return f.read().strip()


def curve_socket(ctx, kind, server_public_file, public, secret):
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if public != "-":
        s.curve_serverkey = text(server_public_file).encode()
        s.curve_publickey = public.encode()
        s.curve_secretkey = secret.encode()
    return s


def main():
    mode = sys.argv[1]
    ctx = zmq.Context()
    if mode == "keypair":
        public, secret = zmq.curve_keypair()
        print(json.dumps({"public": public.decode(), "secret": secret.decode()}))
        return
    if mode == "sub":
        endpoint, server, public, secret, seconds, want = sys.argv[2:8]
        s = curve_socket(ctx, zmq.SUB, server, public, secret)
        s.setsockopt(zmq.SUBSCRIBE, b"snapshot.")
        s.connect(endpoint)
        deadline = time.monotonic() + float(seconds)
        topics = []
        while time.monotonic() < deadline and len(topics) < int(want):
            if s.poll(200):
                parts = s.recv_multipart()
                assert len(parts) == 3, parts
                topics.append(parts[0].decode())
        print(json.dumps({"received": len(topics), "topics": topics}))
        return
    if mode == "dealer":
        endpoint, server, public, secret, header, payload = sys.argv[2:8]
        s = curve_socket(ctx, zmq.DEALER, server, text(public), text(secret))
        s.connect(endpoint)
        with open(header, "rb") as f:
            h = f.read()
        with open(payload, "rb") as f:
            p = f.read()
        s.send_multipart([h, p])
        acks = []
        if s.poll(20000):
            acks = [part.hex() for part in s.recv_multipart()]
        print(json.dumps({"acks": acks}))
        return
    raise SystemExit(f"unknown mode {mode}")


main()
