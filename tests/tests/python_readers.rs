//! Readers we did not write: `fleetset-aggregator demo` (this host's real metrics, both
//! transports) writes a store that pyarrow (`pyarrow.parquet.read_table`), DuckDB and pandas
//! read, with the documented columns and types. Needs `FLEETSET_PYTHON` (scripts/test.sh).

use fleetset_tests::*;
use std::process::Command;

const READERS: &str = r#"
import sys, pyarrow.parquet as pq, pyarrow.dataset as ds, duckdb, pandas as pd
root = sys.argv[1]
series = pq.read_table(f"{root}/series")
assert series.num_rows > 0, "no series rows"
assert str(series.schema.field("ts").type) == "timestamp[ms, tz=UTC]", series.schema
assert str(series.schema.field("value").type) == "double"
assert {"agent_id", "window_start", "metric", "ts", "value", "date"} <= set(series.column_names), series.column_names
windows = ds.dataset(f"{root}/windows", format="parquet", partitioning="hive").to_table()
agents = set(windows.column("agent_id").to_pylist())
assert agents == {"demo-zmq-msgpack", "demo-grpc-protobuf"}, agents
assert "label_site" in windows.column_names, windows.column_names
assert not any("__" in c for c in windows.column_names), "statistics live in stats"
stats = pq.read_table(f"{root}/stats")
assert {"agent_id", "seq", "window_start", "metric", "count", "min", "max", "mean", "std", "first",
        "last", "date"} == set(stats.column_names), stats.column_names
assert str(stats.schema.field("count").type) == "uint64" and str(stats.schema.field("std").type) == "double"
con = duckdb.connect()
n, dup = con.execute(f"""
  SELECT count(*), count(*) - count(DISTINCT (agent_id, window_start))
  FROM read_parquet('{root}/windows/*/*.parquet', hive_partitioning=true, union_by_name=true)""").fetchone()
assert n == windows.num_rows and dup == 0, (n, windows.num_rows, dup)
bad = con.execute(f"""
  SELECT count(*) FROM read_parquet('{root}/series/*/*.parquet', hive_partitioning=true)
  WHERE ts < window_start OR ts >= window_start + INTERVAL 5 SECOND""").fetchone()[0]
assert bad == 0, bad
df = pd.read_parquet(f"{root}/windows")
assert len(df) == n
assert str(df["window_start"].dtype) == "datetime64[ms, UTC]", df["window_start"].dtype
# The README recipe: statistics pivoted wide, joined to the windows.
st = pd.read_parquet(f"{root}/stats")
wide = st.pivot_table(index=["agent_id", "window_start"], columns="metric", values=["mean", "max"])
wide.columns = [f"{m}__{s}" for s, m in wide.columns]
both = df.merge(wide.reset_index(), on=["agent_id", "window_start"])
assert len(both) == n and both["cpu_percent__max"].between(0, 100).all()
m = con.execute(f"""
  SELECT count(DISTINCT (agent_id, window_start)), max(max)
  FROM read_parquet('{root}/stats/*/*.parquet', hive_partitioning=true)
  WHERE metric = 'cpu_percent'""").fetchone()
assert m[0] == n and 0 <= m[1] <= 100, m
print(f"OK series={series.num_rows} windows={n} agents={sorted(agents)}")
"#;

#[test]
fn demo_store_reads_in_pyarrow_duckdb_and_pandas() {
    let py = python();
    let dir = TempDir::new("demo");
    let data = dir.path().join("store");
    let out = Command::new(bin("fleetset-aggregator"))
        .args([
            "demo",
            "--duration",
            "7s",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "demo-zmq-msgpack",
        "demo-grpc-protobuf",
        "windows",
        "points",
        "pd.read_parquet",
    ] {
        assert!(
            stdout.contains(needle),
            "demo summary lacks {needle}:\n{stdout}"
        );
    }
    let check = Command::new(&py)
        .arg("-c")
        .arg(READERS)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "python readers failed:\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("OK"));
}
