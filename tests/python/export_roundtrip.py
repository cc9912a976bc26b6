"""Every plain export of every table equals the store, read back with tools fleetset did not
write: Python's csv and json modules, pyarrow (Parquet, Arrow IPC) and sqlite3. The windows
export is wide: the store's windows rows joined with their stats rows pivoted to
`<metric>__<stat>` columns (metrics by name, stats in count, min, max, mean, std, first, last
order), computed here from the two tables independently.

usage: export_roundtrip.py DATA_DIR OUT_DIR   (OUT_DIR holds clear-<table>.<format>)
"""
import csv, json, sqlite3, sys
from datetime import datetime
import pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as ds, pyarrow.ipc as ipc, pyarrow.parquet as pq

data, out = sys.argv[1], sys.argv[2]


STATS = ["count", "min", "max", "mean", "std", "first", "last"]


def raw(table):
    t = ds.dataset(f"{data}/{table}", format="parquet", partitioning="hive").to_table()
    return t.drop_columns([c for c in t.column_names if c == "date"])


def store(table):
    t = raw(table)
    if table != "windows":
        return t
    stats = raw("stats").to_pylist()
    by_key = {}
    for r in stats:
        by_key.setdefault((r["agent_id"], r["window_start"]), {})[r["metric"]] = r
    metrics = sorted({r["metric"] for r in stats})
    fields = list(t.schema) + [
        pa.field(f"{m}__{s}", pa.uint64() if s == "count" else pa.float64())
        for m in metrics for s in STATS]
    rows = []
    for w in t.to_pylist():
        have = by_key.get((w["agent_id"], w["window_start"]), {})
        for m in metrics:
            for s in STATS:
                w[f"{m}__{s}"] = have[m][s] if m in have else None
        rows.append(w)
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def ms(v):
    """A timestamp as Unix ms: datetime, ISO string or int."""
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return round(v.timestamp() * 1000)


def typed(field, v):
    if v is None or v == "":
        return None
    t = field.type
    if pa.types.is_timestamp(t):
        return ms(v)
    if pa.types.is_floating(t):
        return float(v)
    if pa.types.is_integer(t):
        return int(v)
    return str(v)


def rows(schema, records):
    """Rows as sorted tuples of typed values, in schema order."""
    out = [tuple(typed(f, r.get(f.name)) for f in schema) for r in records]
    return sorted(out, key=repr)


checked = 0
for table in ["series", "windows", "processes"]:
    want_t = store(table)
    schema = want_t.schema
    want = rows(schema, want_t.to_pylist())
    assert want, f"the store has no {table} rows"
    got = {}
    with open(f"{out}/clear-{table}.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == schema.names, (table, reader.fieldnames, schema.names)
        got["csv"] = rows(schema, list(reader))
    with open(f"{out}/clear-{table}.jsonl") as f:
        got["jsonl"] = rows(schema, [json.loads(line) for line in f])
    pq_t = pq.read_table(f"{out}/clear-{table}.parquet")
    assert pq_t.schema.names == schema.names, (table, pq_t.schema.names)
    got["parquet"] = rows(schema, pq_t.to_pylist())
    arrow_t = ipc.open_file(f"{out}/clear-{table}.arrow").read_all()
    assert arrow_t.schema.names == schema.names
    got["arrow"] = rows(schema, arrow_t.to_pylist())
    con = sqlite3.connect(f"{out}/clear-{table}.sqlite")
    cur = con.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in cur.description]
    assert names == schema.names, (table, names)
    got["sqlite"] = rows(schema, [dict(zip(names, r)) for r in cur.fetchall()])
    indexes = [r[1] for r in con.execute(f"PRAGMA index_list('{table}')")]
    assert indexes, f"no index in the {table} SQLite export"
    for f in schema:
        decl = [r[2] for r in con.execute(f"PRAGMA table_info('{table}')") if r[1] == f.name][0]
        assert decl in ("TEXT", "INTEGER", "REAL"), (f.name, decl)
    for fmt, g in got.items():
        assert len(g) == len(want), (table, fmt, len(g), len(want))
        for a, b in zip(g, want):
            assert a == b, (table, fmt, a, b)
        checked += len(g)
print(f"OK {checked} rows compared across 3 tables x 5 formats")
