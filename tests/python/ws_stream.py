"""A WebSocket client we did not write (the `websockets` package) against fleetset's live stream
(the aggregator's GET /v1/stream, or `export --stream --listen`).

usage:
  ws_stream.py collect URL N FORMAT [--header TOKEN | --subprotocol TOKEN] [--stall SECONDS]
      Connects (the token as `Authorization: Bearer TOKEN`, or as the subprotocol list
      `fleetset.v1, bearer.TOKEN`), optionally reads nothing for SECONDS first, then reads until
      N windows arrived (30 s at most), decoding each message as FORMAT (jsonlines text, msgpack
      or protobuf binary — protobuf with stubs generated from our .proto). Prints
      {"subprotocol", "windows": [{"agent_id", "seq", "start", "end", "historical", "labels",
      "metrics", "stats", "points", "payload_sha256", "payload_ok"}...], "lags": [n...]}.
  ws_stream.py status URL [--header TOKEN | --subprotocol TOKEN]
      Opens the handshake only; prints {"status": 101 | the HTTP status, "subprotocol"}.
  ws_stream.py quiet URL SECONDS [--header TOKEN]
      Connects with client pings off (so only the server's pings and our automatic pongs cross
      the wire) and waits SECONDS for a message; prints {"open": bool, "messages": n}.
"""
import hashlib
import json
import sys
import time

import msgpack
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def auth(args):
    headers, protocols = {}, None
    if "--header" in args:
        headers["Authorization"] = "Bearer " + args[args.index("--header") + 1]
    if "--subprotocol" in args:
        protocols = ["fleetset.v1", "bearer." + args[args.index("--subprotocol") + 1]]
    return headers, protocols


def open_ws(url, args, **kw):
    headers, protocols = auth(args)
    return connect(url, additional_headers=headers, subprotocols=protocols, open_timeout=10,
                   max_size=64 << 20, **kw)


def window_from_json(m):
    return {
        "agent_id": m["agent_id"], "seq": m["seq"], "start": m["start"], "end": m["end"],
        "historical": m["historical"], "labels": m["labels"],
        "metrics": sorted(m["data"]), "stats": sorted(m["stats"]),
        "points": sum(len(p) for p in m["data"].values()),
        "payload_sha256": m["payload_sha256"], "payload_ok": None,
        "received_at_us": m["received_at_us"],
        "mean_cpu": m["stats"].get("cpu_percent", {}).get("mean"),
        "int_ts": all(isinstance(p[0], int) for pts in m["data"].values() for p in pts),
    }


def decode(fmt, msg, pb):
    """(window dict, None) or (None, lag)."""
    if fmt == "jsonlines":
        assert isinstance(msg, str), "jsonlines messages are text"
        m = json.loads(msg)
        if "lag" in m:
            return None, m["lag"]
        return window_from_json(m), None
    assert isinstance(msg, bytes), f"{fmt} messages are binary"
    if fmt == "msgpack":
        m = msgpack.unpackb(msg, raw=False, strict_map_key=False)
        if "lag" in m:
            return None, m["lag"]
        w = window_from_json({**m, "labels": m["host"]["labels"]})
        w["int_ts"] = None  # seed 004 layout: timestamps are float64
        w["hostname"] = m["host"]["hostname"]
        return w, None
    r = pb.SubscribeResponse()
    r.ParseFromString(msg)
    if r.WhichOneof("event") == "lag":
        return None, r.lag.skipped_windows
    s = r.snapshot
    payload_ok = None
    if r.frame_payload:
        payload_ok = hashlib.sha256(r.frame_payload).digest() == r.payload_sha256
    cpu = [m for m in s.series if m.name == "cpu_percent" and m.HasField("stats")]
    return {
        "agent_id": s.agent_id, "seq": s.seq, "start": s.start, "end": s.end,
        "historical": r.historical, "labels": dict(s.host.labels),
        "metrics": sorted(m.name for m in s.series),
        "stats": sorted(m.name for m in s.series if m.HasField("stats")),
        "points": sum(len(m.ts_ms) for m in s.series),
        "payload_sha256": r.payload_sha256.hex(), "payload_ok": payload_ok,
        "received_at_us": r.received_at_us,
        "mean_cpu": cpu[0].stats.mean if cpu else None, "int_ts": True,
    }, None


def collect(url, n, fmt, args):
    pb = None
    if fmt == "protobuf":
        from bearer_tokens import fleetset_stubs
        pb, _ = fleetset_stubs()
    windows, lags = [], []
    with open_ws(url, args, max_queue=1) as ws:
        if "--stall" in args:
            time.sleep(float(args[args.index("--stall") + 1]))
        deadline = time.monotonic() + 30
        while len(windows) < n:
            msg = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            w, lag = decode(fmt, msg, pb)
            if w is None:
                lags.append(lag)
            else:
                windows.append(w)
        print(json.dumps({"subprotocol": ws.subprotocol, "windows": windows, "lags": lags}))


def status(url, args):
    try:
        with open_ws(url, args) as ws:
            print(json.dumps({"status": 101, "subprotocol": ws.subprotocol}))
    except InvalidStatus as e:
        print(json.dumps({"status": e.response.status_code, "subprotocol": None}))


def quiet(url, seconds, args):
    messages, is_open = 0, True
    with open_ws(url, args, ping_interval=None) as ws:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ws.recv(timeout=max(0.05, deadline - time.monotonic()))
                messages += 1
            except TimeoutError:
                pass
            except ConnectionClosed:
                is_open = False
                break
    print(json.dumps({"open": is_open, "messages": messages}))


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "collect":
        collect(rest[0], int(rest[1]), rest[2], rest[3:])
    elif cmd == "status":
        status(rest[0], rest[1:])
    elif cmd == "quiet":
        quiet(rest[0], float(rest[1]), rest[2:])
    else:
        sys.exit(__doc__)
