#!/usr/bin/env python3
"""What a subscriber that never reads costs the aggregator (issue: live consumers).

Runs the aggregator twice on loopback — once with no subscribers, once with a pyzmq SUB and a
grpcio Subscribe stream that connect and never read — replays the same frames through it with
`fleetset-agent replay`, and reports the aggregator's RSS (VmRSS, VmHWM) after each run.

    python3 scripts/stalled_subscriber.py [--windows 4000] [--rows 60] [--target target/debug]
"""
import argparse, json, os, subprocess, sys, tempfile, time

import grpc
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from grpc_subscriber import generated_modules  # noqa: E402


def rss_kib(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()[0] if v.split() else "0"
    return int(fields["VmRSS"]), int(fields["VmHWM"])


def run(target, csv, stalled, work):
    ready = os.path.join(work, f"ready-{stalled}.json")
    agg = subprocess.Popen([f"{target}/fleetset-aggregator", "serve", "--data-dir", os.path.join(work, f"data-{stalled}"),
                            "--zmq-bind", "tcp://127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
                            "--zmq-pub", "tcp://127.0.0.1:0", "--otlp-listen", "127.0.0.1:0",
                            "--control-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                            "--ready-file", ready, "--commit-interval", "200ms"],
                           stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(ready):
            break
        time.sleep(0.05)
    info = json.load(open(ready))
    keep = []
    if stalled:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(info["zmq_pub"])
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        pb, pb_grpc = generated_modules()
        call = pb_grpc.LiveStub(grpc.insecure_channel(info["grpc"])).Subscribe(pb.SubscribeRequest())
        keep += [sub, call]  # never read
        time.sleep(0.5)
    before = rss_kib(agg.pid)
    subprocess.run([f"{target}/fleetset-agent", "replay", csv, "--agent-id", "load", "--state-dir",
                    os.path.join(work, f"st-{stalled}"), "--aggregator", info["zmq"], "--window", "1m",
                    "--set", "transport.max_in_flight=256", "--set", "spool.fsync=never"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = rss_kib(agg.pid)
    agg.terminate()
    agg.wait(timeout=30)
    return before, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=4000)
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--target", default="target/debug")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="fleetset-stalled-")
    csv = os.path.join(work, "load.csv")
    t0 = 1_700_000_000 - 1_700_000_000 % 3600
    with open(csv, "w") as f:
        f.write("timestamp,a,b,c,d\n")
        step = 60 // args.rows
        for i in range(args.windows * args.rows):
            t = t0 + i * step
            f.write(f"{t},{(t * 7) % 101 / 3},{t % 97},{(t * 13) % 89 / 7},{t % 7}\n")
    base = run(args.target, csv, False, work)
    stalled = run(args.target, csv, True, work)
    print(f"{args.windows} frames of {args.rows} samples x 4 metrics")
    print(f"baseline  before/after RSS KiB: {base[0][0]} / {base[1][0]}  (peak {base[1][1]})")
    print(f"stalled   before/after RSS KiB: {stalled[0][0]} / {stalled[1][0]}  (peak {stalled[1][1]})")
    print(f"cost of a stalled SUB + gRPC stream: {stalled[1][1] - base[1][1]} KiB peak")


if __name__ == "__main__":
    main()
