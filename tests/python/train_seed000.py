"""Seed 000's training example (ADR-010 "Training Pipeline"), adapted only in paths and column
names, on a fleetset training set; then the set's contract: readable by pandas, pyarrow, DuckDB
and polars, train strictly before test, shards = the split files, manifest checksums match.

usage: train_seed000.py SET_DIR MODEL_PATH
"""
import hashlib, json, pathlib, sys

set_dir, model_path = sys.argv[1], sys.argv[2]

# --- seed 000, adapted ---------------------------------------------------------------------
import pandas as pd
df = pd.read_parquet(f"{set_dir}/train.parquet")
features = ["net_rx_bytes_per_sec__mean", "net_rx_bytes_per_sec__trend", "net_rx_bytes_per_sec__mean_lag1",
            "memory_used_percent__mean", "cpu_percent__mean", "cpu_percent__trend",
            "process_count__mean", "cpu_percent__mean_lag1", "time_of_day", "day_of_week",
            "minutes_since_last_window"]
X = df[features]
y = df["label"]
from sklearn.ensemble import RandomForestClassifier
model = RandomForestClassifier(random_state=0)
model.fit(X, y)
import joblib
joblib.dump(model, model_path)
# ---------------------------------------------------------------------------------------------

test = pd.read_parquet(f"{set_dir}/test.parquet")
score = model.score(test[features], test["label"])
assert len(test) > 0 and 0.0 <= score <= 1.0, (len(test), score)
assert set(model.predict(test[features])) <= {"Negative", "Positive"}

# Each label comes from the agent's following window: wherever that window is in the set too,
# the label is its net_rx_bytes_per_sec__mean > 500000.
both = pd.concat([df, test]).sort_values(["agent_id", "window_start"])
checked = 0
for _, rows in both.groupby("agent_id"):
    rows = rows.reset_index(drop=True)
    for i in range(len(rows) - 1):
        if rows.loc[i + 1, "window_start"] == rows.loc[i, "window_end"]:
            want = "Positive" if rows.loc[i + 1, "net_rx_bytes_per_sec__mean"] > 500000 else "Negative"
            assert rows.loc[i, "label"] == want, (rows.loc[i, "window_start"], rows.loc[i, "label"], want)
            checked += 1
assert checked >= 10, checked
assert set(df["label"]) <= {"Negative", "Positive"} and df["label"].nunique() == 2, df["label"].value_counts()
assert str(df["window_start"].dtype) == "datetime64[ms, UTC]", df["window_start"].dtype

manifest = json.loads(pathlib.Path(f"{set_dir}/manifest.json").read_text())
# Time order: every train row and the window its label came from end before any test row.
length = df["window_end"] - df["window_start"]
assert (df["window_end"] + length).max() <= test["window_start"].min(), "train overlaps test"
cutoff = pd.Timestamp(manifest["split"]["cutoff"])
assert (test["window_start"] >= cutoff).all() and ((df["window_end"] + length) <= cutoff).all()
rows = manifest["split"]["rows"]
assert rows["train"] == len(df) and rows["test"] == len(test), rows
for split, frame in [("train", df), ("test", test)]:
    hist = {k: v for k, v in manifest["class_histogram"][split].items() if v}
    assert hist == frame["label"].value_counts().to_dict(), (split, hist)

# Checksums of every file written.
files = manifest["files"]
for f in files:
    data = pathlib.Path(set_dir, f["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
    assert len(data) == f["bytes"]
written = {str(p.relative_to(set_dir)) for p in pathlib.Path(set_dir).rglob("*.parquet")}
assert written == {f["path"] for f in files}, written ^ {f["path"] for f in files}

# Shards: one per site and agent, together exactly the split files.
for split, frame in [("train", df), ("test", test)]:
    parts = [pd.read_parquet(pathlib.Path(set_dir, f["path"])) for f in files
             if f["split"] == split and "site" in f]
    union = pd.concat(parts).sort_values(["window_start", "agent_id"]).reset_index(drop=True)
    ordered = frame.sort_values(["window_start", "agent_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(union, ordered)
sites = {f["site"] for f in files if "site" in f}
agents = {f["agent"] for f in files if "agent" in f}
assert sites == {"eu-1", "us-1"} and len(agents) == 2, (sites, agents)
for f in files:
    if "site" in f:
        part = pd.read_parquet(pathlib.Path(set_dir, f["path"]))
        assert (part["label_site"] == f["site"]).all() and (part["agent_id"] == f["agent"]).all()

# Other readers.
import pyarrow.parquet as pq, duckdb, polars as pl
assert pq.read_table(f"{set_dir}/train.parquet").num_rows == len(df)
n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{set_dir}/test.parquet')").fetchone()[0]
assert n == len(test), n
p = pl.read_parquet(f"{set_dir}/train.parquet")
assert p.height == len(df) and p.columns == list(df.columns)
print(f"OK train={len(df)} test={len(test)} labels_checked={checked} score={score:.3f} features={len(manifest['features'])} files={len(files)}")
