"""Checks a training set labelled with NAB's combined_windows.json: every row is Positive exactly
when its following window [window_end, window_end + 1 h) overlaps an incident of its file; the
split is time-ordered; the manifest's checksums match the files.

usage: nab_labels.py SET_DIR COMBINED_WINDOWS_JSON
"""
import hashlib, json, pathlib, sys
import pandas as pd

set_dir, windows_path = sys.argv[1], sys.argv[2]
incidents = {}
for key, spans in json.loads(pathlib.Path(windows_path).read_text()).items():
    stem = pathlib.PurePosixPath(key).stem
    incidents[stem] = [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in spans]

train = pd.read_parquet(f"{set_dir}/train.parquet")
test = pd.read_parquet(f"{set_dir}/test.parquet")
rows = pd.concat([train, test])
hour = pd.Timedelta(hours=1)
assert ((rows["window_end"] - rows["window_start"]) == hour).all()
positives = 0
for r in rows.itertuples():
    nxt_start, nxt_end = r.window_end, r.window_end + hour
    want = any(a < nxt_end and b >= nxt_start for a, b in incidents[r.agent_id])
    assert (r.label == "Positive") == want, (r.agent_id, r.window_start, r.label, want)
    assert r.label_id == int(want)
    positives += want
assert positives > 0, "no positive rows"
per_agent = rows[rows.label == "Positive"].groupby("agent_id").size().to_dict()
assert set(per_agent) == {"machine_temperature_system_failure", "ec2_cpu_utilization_825cc2"}, per_agent

# Time order: train rows (and the windows their labels come from) end before any test row.
assert (train["window_end"] + hour).max() <= test["window_start"].min()

manifest = json.loads(pathlib.Path(f"{set_dir}/manifest.json").read_text())
assert manifest["label"]["rule"] == "incidents"
for f in manifest["files"]:
    data = pathlib.Path(set_dir, f["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
hist = manifest["class_histogram"]
assert hist["train"]["Positive"] + hist["test"]["Positive"] == positives, hist
print(f"OK rows={len(rows)} positives={positives} per_agent={per_agent} train={len(train)} test={len(test)}")
