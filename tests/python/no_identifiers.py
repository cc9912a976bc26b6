"""No raw identifier in any decoded cell or column name of the Parquet and Arrow files under a
directory (their pages may be compressed, so a byte scan alone is not enough).

usage: no_identifiers.py DIR RAW [RAW ...]
"""
import pathlib, sys
import pyarrow.ipc as ipc, pyarrow.parquet as pq

root, raws = pathlib.Path(sys.argv[1]), sys.argv[2:]
tables = 0
for path in sorted(root.rglob("*")):
    if path.suffix == ".parquet":
        t = pq.read_table(path)
        meta = pq.read_metadata(path)
        extra = str(meta.metadata) + str(meta.schema)
    elif path.suffix == ".arrow":
        t = ipc.open_file(path).read_all()
        extra = str(t.schema.metadata)
    else:
        continue
    tables += 1
    text = " ".join(t.column_names) + extra
    for col in t.columns:
        text += " " + " ".join(str(v) for v in col.to_pylist())
    for raw in raws:
        assert raw not in text, f"{raw} in {path}"
assert tables >= 6, tables
print(f"OK {tables} Parquet/Arrow files decoded, none holds {raws}")
