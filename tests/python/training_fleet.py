"""Checks the training sets tests/tests/training_fleet.rs exports from the fleet of
tests/data/training/ (four hosts, different periods and scales; rule cpu_percent__max > 90):

- is_outlier equals IQR bounds recomputed here with pandas from a plain windows export: per
  agent by default, fleet-wide with --outliers-by fleet; fleet-wide flags nearly all of db-1's
  rows, per agent almost none;
- the manifest's warnings (code, message, fails_strict) match what pandas counts in the files;
  the shard files it skipped are absent and no shard file is empty;
- the baselines equal scikit-learn's DummyClassifier(strategy="most_frequent") scores;
- --split-by agent: every agent in both splits, each before its own cutoff.

usage: training_fleet.py BY_TIME_DIR FLEET_OUTLIERS_DIR BY_AGENT_DIR WINDOWS_PARQUET
"""
import json, pathlib, sys
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score

by_time, by_fleet, by_agent, windows_path = sys.argv[1:5]
HOUR = pd.Timedelta(hours=1)
AGENTS = {"batch-1", "web-1", "web-2", "db-1"}
SPLIT_CODES = {"agent_dominates_split", "class_under_1_percent", "empty_shard_split"}


def load(d):
    m = json.loads(pathlib.Path(d, "manifest.json").read_text())
    return pd.read_parquet(f"{d}/train.parquet"), pd.read_parquet(f"{d}/test.parquet"), m


def iqr_flags(w, per_agent):
    """Rows outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR] of some <metric>__mean, pandas' quantiles."""
    flags = pd.Series(False, index=w.index)
    groups = w.groupby("agent_id") if per_agent else [(None, w)]
    for _, g in groups:
        for c in [c for c in w.columns if c.endswith("__mean")]:
            v = g[c].dropna()
            q1, q3 = v.quantile(0.25), v.quantile(0.75)
            if len(v) < 4 or q3 - q1 <= 0:
                continue
            lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
            flags.loc[g.index] |= ((g[c] < lo) | (g[c] > hi)).fillna(False)
    return flags


windows = pd.read_parquet(windows_path)
assert set(windows["agent_id"]) == AGENTS, set(windows["agent_id"])
assert {"cpu_percent__mean", "requests_per_sec__mean"} <= set(windows.columns)


def check_outliers(d, per_agent):
    train, test, m = load(d)
    assert m["validation"]["outliers_by"] == ("agent" if per_agent else "fleet"), m["validation"]
    want = windows.assign(want=iqr_flags(windows, per_agent))[["agent_id", "window_start", "want"]]
    rows = pd.concat([train, test]).merge(want, on=["agent_id", "window_start"], how="left")
    assert rows["want"].notna().all()
    bad = rows[rows["is_outlier"] != rows["want"]]
    assert bad.empty, bad[["agent_id", "window_start", "is_outlier", "want"]]
    return rows.groupby("agent_id")["is_outlier"].mean().to_dict()


share_agent = check_outliers(by_time, per_agent=True)
share_fleet = check_outliers(by_fleet, per_agent=False)
assert share_fleet["db-1"] > 0.9, share_fleet
assert share_agent["db-1"] < 0.05, share_agent
assert max(share_agent.values()) < 0.05, share_agent

# --- warnings, skipped shards, baselines of the fleet-wide time split ---------------------
train, test, m = load(by_time)
assert m["format"] == "fleetset-training-set/2" and m["split"]["by"] == "time", m["split"]
cutoff = pd.Timestamp(m["split"]["cutoff"])
assert ((train["window_end"] + HOUR) <= cutoff).all() and (test["window_start"] >= cutoff).all()
warnings = m["warnings"]
for w in warnings:
    assert set(w) == {"code", "message", "fails_strict"}, w
    assert w["fails_strict"] == (w["code"] in SPLIT_CODES), w
codes = [w["code"] for w in warnings if w["fails_strict"]]
assert sorted(codes) == ["agent_dominates_split", "class_under_1_percent",
                         "empty_shard_split", "empty_shard_split"], warnings

per_agent_test = test["agent_id"].value_counts()
top = per_agent_test.idxmax()
assert top == "db-1" and per_agent_test[top] / len(test) > 0.5, per_agent_test
dominated = next(w for w in warnings if w["code"] == "agent_dominates_split")["message"]
assert dominated.startswith(f"test split: {per_agent_test[top]} of its {len(test)} rows"), dominated
assert "db-1" in dominated, dominated
positives = int((test["label"] == "Positive").sum())
assert 0 < positives < 0.01 * len(test), (positives, len(test))
rare = next(w for w in warnings if w["code"] == "class_under_1_percent")["message"]
assert rare.startswith(f"test split: class Positive has {positives} of {len(test)} rows"), rare

# Shards: agents missing from a split have no file there, listed as skipped; none is empty.
in_train, in_test = set(train["agent_id"]), set(test["agent_id"])
assert in_train == AGENTS - {"db-1"} and in_test == AGENTS - {"batch-1"}, (in_train, in_test)
skipped = {(f["split"], f["agent"]) for f in m["skipped_files"]}
assert skipped == {("train", "db-1"), ("test", "batch-1")}, m["skipped_files"]
for f in m["skipped_files"]:
    assert f["reason"] == "no rows" and not pathlib.Path(by_time, f["path"]).exists(), f
shard_files = sorted(pathlib.Path(by_time, "shards").rglob("*.parquet"))
assert len(shard_files) == 2 * len(AGENTS) - 2, shard_files
for p in shard_files:
    assert pq.read_metadata(p).num_rows > 0, p
listed = {f["path"] for f in m["files"]}
assert {str(p.relative_to(by_time)) for p in shard_files} <= listed

# Baselines: always the train majority class, as scikit-learn scores it.
dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train), 1)), train["label"])
b = m["baselines"]
assert b["majority_class"] == dummy.predict(np.zeros((1, 1)))[0] == "Negative", b
assert "balanced_accuracy" in b["definition"], b
for name, frame in [("train", train), ("test", test)]:
    pred = dummy.predict(np.zeros((len(frame), 1)))
    got = b[name]
    assert got["rows"] == len(frame) and got["classes_present"] == frame["label"].nunique(), got
    assert abs(got["accuracy"] - accuracy_score(frame["label"], pred)) < 1e-12, (name, got)
    assert abs(got["balanced_accuracy"] - balanced_accuracy_score(frame["label"], pred)) < 1e-12, (name, got)
assert b["test"]["balanced_accuracy"] == 0.5, b

# --- the per-agent split ---------------------------------------------------------------------
a_train, a_test, am = load(by_agent)
assert am["split"]["by"] == "agent" and am["split"]["cutoff"] is None, am["split"]
cutoffs = {a: pd.Timestamp(c) for a, c in am["split"]["cutoffs"].items()}
assert set(cutoffs) == AGENTS, cutoffs
for agent in sorted(AGENTS):
    tr, te = a_train[a_train.agent_id == agent], a_test[a_test.agent_id == agent]
    assert len(tr) > 0 and len(te) > 0, (agent, len(tr), len(te))
    assert (tr["window_end"] + HOUR).max() <= cutoffs[agent] <= te["window_start"].min(), agent
assert am["skipped_files"] == [], am["skipped_files"]
assert not [w for w in am["warnings"] if w["fails_strict"]], am["warnings"]
assert a_test["agent_id"].value_counts().max() <= 0.5 * len(a_test)

print(f"OK outliers fleet-wide db-1={share_fleet['db-1']:.2f} per-agent db-1={share_agent['db-1']:.2f}; "
      f"time split test={len(test)} (db-1 {per_agent_test['db-1']}, positives {positives}), "
      f"baseline test acc={b['test']['accuracy']:.4f} bal={b['test']['balanced_accuracy']}; "
      f"per-agent split train={len(a_train)} test={len(a_test)} test per agent={a_test.agent_id.value_counts().to_dict()}")
