//! The store's schema in one place: its tables, their column names and Arrow types, the
//! partition layout on disk and how a file is known to be committed (README.md "Store layout";
//! column names and layout are a contract with pandas, DuckDB, Spark and the exports).
//!
//! ```text
//! DATA_DIR/<table>/date=YYYY-MM-DD/part-<batch>.parquet     committed file
//! DATA_DIR/<table>/date=YYYY-MM-DD/.tmp-<batch>.parquet     write in progress (readers skip it)
//! DATA_DIR/quarantine/                                      unreadable windows files
//! ```
//!
//! `date` is the UTC date of the window start; `<batch>` is `<commit Unix ms, 13 digits>-<16 hex
//! random>`, so names sort by commit time. A batch's `windows` file ([`COMMIT_RECORD`]) is
//! written last and is its commit record: a `series`/`processes`/`stats` file whose batch has no
//! `windows` file in the same partition belongs to a commit that never finished.
//!
//! Every table has a fixed schema except the `label_<key>` columns of `windows` (one per
//! operator label key; no fixed column of any table starts with `label_`, and label keys are
//! `[a-z0-9_]` without `__`, so a label column never collides with another column). Exact
//! statistics are the long `stats` table, one row per (agent, window, metric): the column count
//! of a file does not grow with the number of metrics.
//!
//! Every other module names tables and columns through this one.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use std::path::{Path, PathBuf};

/// A table of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Table {
    /// One row per downsampled point (`agent_id, window_start, metric, ts, value`).
    Series,
    /// One row per (agent, window): header, host attributes, labels.
    Windows,
    /// Top-N process records per window.
    Processes,
    /// One row per (agent, window, metric): the exact statistics (`agent_id, seq,
    /// window_start, metric, count, min, max, mean, std, first, last`).
    Stats,
}

/// Every table in commit order: `windows` last, it is the commit record.
pub const COMMIT_ORDER: [Table; 4] = [
    Table::Series,
    Table::Processes,
    Table::Stats,
    Table::Windows,
];

/// The table whose file commits a batch.
pub const COMMIT_RECORD: Table = Table::Windows;

impl Table {
    /// Directory name of the table in the data directory (`series`, `windows`, `processes`,
    /// `stats`).
    pub fn name(self) -> &'static str {
        match self {
            Table::Series => "series",
            Table::Windows => "windows",
            Table::Processes => "processes",
            Table::Stats => "stats",
        }
    }

    /// The table named `name` (its directory name), if any.
    pub fn from_name(name: &str) -> Option<Table> {
        COMMIT_ORDER.into_iter().find(|t| t.name() == name)
    }

    /// `DATA_DIR/<table>`.
    pub fn dir(self, data_dir: &Path) -> PathBuf {
        data_dir.join(self.name())
    }
}

// Columns shared by the tables.
/// The agent id (utf8), every table.
pub const AGENT_ID: &str = "agent_id";
/// Window start (timestamp ms UTC), every table.
pub const WINDOW_START: &str = "window_start";

// `series` columns.
/// Metric name (utf8), `series` and `stats`.
pub const METRIC: &str = "metric";
/// Point time (timestamp ms UTC), `series`.
pub const TS: &str = "ts";
/// Point value (float64, the metric's unit), `series`.
pub const VALUE: &str = "value";

// `windows` fixed columns.
/// Frame sequence number (uint64), `windows` and `stats`.
pub const SEQ: &str = "seq";
/// Window end, exclusive (timestamp ms UTC), `windows`.
pub const WINDOW_END: &str = "window_end";
/// When the aggregator committed the row (timestamp ms UTC), `windows`.
pub const RECEIVED_AT: &str = "received_at";
/// Payload encoding as sent, `msgpack` / `protobuf` (utf8), `windows`.
pub const ENCODING: &str = "encoding";
/// Hex SHA-256 of the frame payload as sent (utf8), `windows`.
pub const PAYLOAD_SHA256: &str = "payload_sha256";
/// Agent sampling interval, ms (uint64), `windows`.
pub const SAMPLE_INTERVAL_MS: &str = "sample_interval_ms";
/// Host name (utf8), `windows`.
pub const HOSTNAME: &str = "hostname";
/// Operating system (utf8), `windows`.
pub const OS: &str = "os";
/// Kernel version (utf8), `windows`.
pub const KERNEL: &str = "kernel";
/// Logical CPUs (uint32), `windows`.
pub const CPU_COUNT: &str = "cpu_count";
/// Total memory, MB (uint64), `windows`.
pub const MEMORY_TOTAL_MB: &str = "memory_total_mb";
/// Agent version (utf8), `windows`.
pub const AGENT_VERSION: &str = "agent_version";
/// Prefix of the operator label columns `label_<key>` (utf8, nullable), `windows`.
pub const LABEL_PREFIX: &str = "label_";
/// Separator of the wide statistics columns `<metric>__<stat>` that readers and exports pivot
/// the `stats` table into (the windows view of [`crate::store::reader::Scan`]).
pub const STAT_SEPARATOR: &str = "__";
/// Names of the seven statistics, in column order: the `stats` columns after `metric`, and the
/// wide columns per metric (`count` is uint64, the others float64; `std` null when the window
/// had fewer than 2 samples).
pub const STAT_NAMES: [&str; 7] = ["count", "min", "max", "mean", "std", "first", "last"];

// `processes` columns.
/// Process id (uint32), `processes`.
pub const PID: &str = "pid";
/// Salted SHA-256 of the process name (utf8), `processes`.
pub const NAME_HASH: &str = "name_hash";
/// Max resident set size, bytes (uint64), `processes`.
pub const RSS_BYTES: &str = "rss_bytes";
/// Max virtual memory, bytes (uint64), `processes`.
pub const VIRTUAL_MEMORY_BYTES: &str = "virtual_memory_bytes";
/// Mean CPU, % of one CPU (float64), `processes`.
pub const CPU_PERCENT: &str = "cpu_percent";
/// Bytes read from disk in the window (uint64), `processes`.
pub const DISK_READ_BYTES: &str = "disk_read_bytes";
/// Bytes written to disk in the window (uint64), `processes`.
pub const DISK_WRITE_BYTES: &str = "disk_write_bytes";
/// Clear process name (utf8, null unless names are sent), `processes`.
pub const NAME: &str = "name";

/// The stored name of a frame encoding (`encoding` column): `msgpack`, `protobuf`, else
/// `unknown`.
pub fn encoding_name(encoding: i32) -> &'static str {
    match fleetset_proto::Encoding::try_from(encoding) {
        Ok(fleetset_proto::Encoding::Msgpack) => "msgpack",
        Ok(fleetset_proto::Encoding::Protobuf) => "protobuf",
        _ => "unknown",
    }
}

/// The frame encoding of a stored `encoding` value, if it names one.
pub fn encoding_of(name: &str) -> Option<fleetset_proto::Encoding> {
    [
        fleetset_proto::Encoding::Msgpack,
        fleetset_proto::Encoding::Protobuf,
    ]
    .into_iter()
    .find(|e| encoding_name(*e as i32) == name)
}

/// The column of label `key`: `label_<key>`.
pub fn label_column(key: &str) -> String {
    format!("{LABEL_PREFIX}{key}")
}

/// The label key of a `label_<key>` column, if it is one.
pub fn label_key(column: &str) -> Option<&str> {
    column.strip_prefix(LABEL_PREFIX)
}

/// The statistics column `<metric>__<stat>`.
pub fn stat_column(metric: &str, stat: &str) -> String {
    format!("{metric}{STAT_SEPARATOR}{stat}")
}

/// `(metric, index into STAT_NAMES)` of a statistics column `<metric>__<stat>`, if it is one.
pub fn parse_stat_column(column: &str) -> Option<(&str, usize)> {
    let (metric, stat) = column.rsplit_once(STAT_SEPARATOR)?;
    Some((metric, STAT_NAMES.iter().position(|s| *s == stat)?))
}

/// Timestamps: milliseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn field(name: &str, dt: DataType, nullable: bool) -> Field {
    Field::new(name, dt, nullable)
}

/// Schema of a `series` file.
pub fn series_schema() -> Schema {
    Schema::new(vec![
        field(AGENT_ID, DataType::Utf8, false),
        field(WINDOW_START, timestamp_type(), false),
        field(METRIC, DataType::Utf8, false),
        field(TS, timestamp_type(), false),
        field(VALUE, DataType::Float64, false),
    ])
}

/// Schema of a `processes` file.
pub fn processes_schema() -> Schema {
    Schema::new(vec![
        field(AGENT_ID, DataType::Utf8, false),
        field(WINDOW_START, timestamp_type(), false),
        field(PID, DataType::UInt32, false),
        field(NAME_HASH, DataType::Utf8, false),
        field(RSS_BYTES, DataType::UInt64, false),
        field(VIRTUAL_MEMORY_BYTES, DataType::UInt64, false),
        field(CPU_PERCENT, DataType::Float64, false),
        field(DISK_READ_BYTES, DataType::UInt64, false),
        field(DISK_WRITE_BYTES, DataType::UInt64, false),
        field(NAME, DataType::Utf8, true),
    ])
}

/// Schema of a `stats` file: `agent_id, seq, window_start, metric`, then [`STAT_NAMES`]
/// (`count` uint64, the others float64; only `std` nullable).
pub fn stats_schema() -> Schema {
    let mut fields = vec![
        field(AGENT_ID, DataType::Utf8, false),
        field(SEQ, DataType::UInt64, false),
        field(WINDOW_START, timestamp_type(), false),
        field(METRIC, DataType::Utf8, false),
    ];
    fields.extend(STAT_NAMES.iter().enumerate().map(|(i, name)| {
        let dt = if i == 0 {
            DataType::UInt64
        } else {
            DataType::Float64
        };
        field(name, dt, *name == "std")
    }));
    Schema::new(fields)
}

/// The fixed leading fields of a `windows` file, in order; [`label_field`] per label key
/// follows (sorted by key).
pub fn windows_fixed_fields() -> Vec<Field> {
    vec![
        field(AGENT_ID, DataType::Utf8, false),
        field(SEQ, DataType::UInt64, false),
        field(WINDOW_START, timestamp_type(), false),
        field(WINDOW_END, timestamp_type(), false),
        field(RECEIVED_AT, timestamp_type(), false),
        field(ENCODING, DataType::Utf8, false),
        field(PAYLOAD_SHA256, DataType::Utf8, false),
        field(SAMPLE_INTERVAL_MS, DataType::UInt64, false),
        field(HOSTNAME, DataType::Utf8, false),
        field(OS, DataType::Utf8, false),
        field(KERNEL, DataType::Utf8, false),
        field(CPU_COUNT, DataType::UInt32, false),
        field(MEMORY_TOTAL_MB, DataType::UInt64, false),
        field(AGENT_VERSION, DataType::Utf8, false),
    ]
}

/// The `label_<key>` field (utf8, nullable).
pub fn label_field(key: &str) -> Field {
    field(&label_column(key), DataType::Utf8, true)
}

/// The wide `<metric>__<STAT_NAMES[stat]>` field: uint64 for `count`, else float64; nullable.
pub fn stat_field(metric: &str, stat: usize) -> Field {
    let dt = if stat == 0 {
        DataType::UInt64
    } else {
        DataType::Float64
    };
    field(&stat_column(metric, STAT_NAMES[stat]), dt, true)
}

/// Prefix of a partition directory name: `date=`.
pub const PARTITION_PREFIX: &str = "date=";
/// Prefix of a committed file name: `part-`.
pub const PART_PREFIX: &str = "part-";
/// Prefix of a temporary file name: `.tmp-` (a dot-file: readers skip it).
pub const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of every store file.
pub const PARQUET_SUFFIX: &str = ".parquet";
/// Directory under the data directory for unreadable `windows` files.
pub const QUARANTINE_DIR: &str = "quarantine";

/// `YYYY-MM-DD` (UTC) of a Unix ms timestamp (`1970-01-01` when out of range).
pub fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "1970-01-01".into(), |d| d.format("%Y-%m-%d").to_string())
}

/// The partition directory name of `date`: `date=YYYY-MM-DD`.
pub fn partition_name(date: &str) -> String {
    format!("{PARTITION_PREFIX}{date}")
}

/// The partition directory of `table` for `date`: `DATA_DIR/<table>/date=<date>`.
pub fn partition_dir(data_dir: &Path, table: Table, date: &str) -> PathBuf {
    table.dir(data_dir).join(partition_name(date))
}

/// A fresh batch id: commit time (ms, 13 digits) and 64 random bits.
pub fn new_batch_id(now_ms: i64) -> String {
    format!("{now_ms:013}-{:016x}", rand::random::<u64>())
}

/// File name of batch `batch_id` once committed: `part-<batch>.parquet`.
pub fn part_file_name(batch_id: &str) -> String {
    format!("{PART_PREFIX}{batch_id}{PARQUET_SUFFIX}")
}

/// File name of batch `batch_id` while it is written: `.tmp-<batch>.parquet`.
pub fn temp_file_name(batch_id: &str) -> String {
    format!("{TEMP_PREFIX}{batch_id}{PARQUET_SUFFIX}")
}

/// Whether `name` is a temporary file name (a write that has not finished).
pub fn is_temp_file_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// `(partition dir name, batch id)` of a committed-name file `…/date=D/part-<batch>.parquet`;
/// `None` for any other name.
pub fn part_file_key(path: &Path) -> Option<(String, String)> {
    let name = path.file_name()?.to_str()?;
    let batch = name
        .strip_prefix(PART_PREFIX)?
        .strip_suffix(PARQUET_SUFFIX)?;
    let part = path.parent()?.file_name()?.to_str()?;
    Some((part.to_string(), batch.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_763_683_199_999), "2025-11-20");
        assert_eq!(date_of(1_763_683_200_000), "2025-11-21");
    }

    #[test]
    fn names_round_trip() {
        let p = partition_dir(Path::new("/d"), Table::Windows, "2025-11-21")
            .join(part_file_name("0000000000001-00000000000000ab"));
        assert_eq!(
            p,
            Path::new("/d/windows/date=2025-11-21/part-0000000000001-00000000000000ab.parquet")
        );
        assert_eq!(
            part_file_key(&p),
            Some((
                "date=2025-11-21".into(),
                "0000000000001-00000000000000ab".into()
            ))
        );
        assert!(part_file_key(&p.with_file_name(temp_file_name("x"))).is_none());
        assert!(is_temp_file_name(&temp_file_name("x")));
        assert_eq!(
            parse_stat_column("cpu_percent__mean"),
            Some(("cpu_percent", 3))
        );
        assert_eq!(parse_stat_column("a__b__count"), Some(("a__b", 0)));
        assert_eq!(parse_stat_column("cpu_percent"), None);
        assert_eq!(label_key(&label_column("site")), Some("site"));
        assert_eq!(Table::from_name("series"), Some(Table::Series));
        assert_eq!(Table::from_name("stats"), Some(Table::Stats));
    }

    #[test]
    fn no_fixed_column_looks_like_a_label_or_stat_column() {
        let fixed: Vec<Field> = [series_schema(), processes_schema(), stats_schema()]
            .iter()
            .flat_map(|s| s.fields().iter().map(|f| f.as_ref().clone()))
            .chain(windows_fixed_fields())
            .collect();
        for f in fixed {
            assert!(label_key(f.name()).is_none(), "{}", f.name());
            assert!(parse_stat_column(f.name()).is_none(), "{}", f.name());
        }
    }
}
