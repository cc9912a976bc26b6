"""Writes the four CSV files of this directory: a small fleet whose hosts cover different
periods and run at different scales (see README.md). Deterministic: running it again rewrites
the same bytes.

usage: python3 make_fleet.py   (from any directory; stdlib only)
"""
import datetime as dt
import math
import pathlib
import random

HERE = pathlib.Path(__file__).resolve().parent
STEP = dt.timedelta(minutes=10)

# host: (first sample, days, cpu level, cpu daily swing, requests/s level, spike hours)
# Spike hours (hours from the first sample) hold one sample at 96 % CPU: the windows whose
# `cpu_percent__max > 90` makes the row before them Positive.
HOSTS = {
    "batch-1": ("2024-02-25 00:00:00", 9, 15.0, 3.0, 40.0, [30, 100, 170, 200]),
    "web-1": ("2024-03-01 00:00:00", 14, 20.0, 6.0, 120.0, [20, 60, 110, 150, 200, 250, 290, 310]),
    "web-2": ("2024-03-02 00:00:00", 14, 25.0, 6.0, 150.0, [40, 90, 130, 180, 230, 280]),
    "db-1": ("2024-03-14 06:00:00", 6, 70.0, 3.0, 4000.0, [100]),
}


def write(host, start, days, cpu, swing, rps, spikes):
    rng = random.Random(host)
    t0 = dt.datetime.fromisoformat(start)
    lines = ["timestamp,cpu_percent,requests_per_sec"]
    for i in range(days * 24 * 6):
        t = t0 + i * STEP
        hour = i // 6
        day_phase = 2 * math.pi * (t.hour + t.minute / 60) / 24
        c = cpu + swing * math.sin(day_phase) + rng.uniform(-1.5, 1.5)
        if hour in spikes and i % 6 == 3:
            c = 96.0
        r = rps * (1 + 0.2 * math.sin(day_phase)) * rng.uniform(0.95, 1.05)
        lines.append(f"{t:%Y-%m-%d %H:%M:%S},{c:.2f},{r:.1f}")
    (HERE / f"{host}.csv").write_text("\n".join(lines) + "\n")


for host, spec in HOSTS.items():
    write(host, *spec)
