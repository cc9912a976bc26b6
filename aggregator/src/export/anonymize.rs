//! Anonymization of exports, on by default (seed 000's `Anonymizer`: hashed identifiers,
//! stripped paths, generalized time, k-anonymity for process records).
//!
//! - Identifier columns — `agent_id`, `hostname`, `name` (clear process names, when agents send
//!   them) and `name_hash` — become `HMAC-SHA256(salt, value)` truncated to 64 bits, as 16 hex
//!   digits: stable across exports with the same salt (so exports join), irreversible without
//!   it. The salt comes from `--salt` / `FLEETSET_EXPORT_SALT` (hex), else from the file
//!   `--salt-file` (default `<data_dir>/export.salt`, 32 random bytes created on first use, mode
//!   0600). It is never written to any output.
//! - Every other string value has its paths stripped: a whitespace-separated token containing
//!   `/` or `\` keeps only its last component (`/home/alice/run.sh` → `run.sh`).
//! - `--generalize-time hour|day` floors every timestamp column to the hour or day (UTC).
//! - `--k-anonymity K` keeps a process record only if its process (name hash) is seen on at
//!   least K distinct agents in the export; the others are dropped and counted.

use crate::store::schema;
use anyhow::{bail, Context, Result};
use arrow::array::{Array, ArrayRef, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use clap::{Args, ValueEnum};
use hmac::{KeyInit, Mac};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Columns whose values are identifiers, exported as salted hashes.
pub const HASHED_COLUMNS: [&str; 4] = [
    schema::AGENT_ID,
    schema::HOSTNAME,
    schema::NAME,
    schema::NAME_HASH,
];

/// Granularity of `--generalize-time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeGrain {
    /// Floor to the hour (UTC).
    Hour,
    /// Floor to the day (UTC).
    Day,
}

impl TimeGrain {
    /// The grain in ms.
    pub fn ms(self) -> i64 {
        match self {
            TimeGrain::Hour => 3_600_000,
            TimeGrain::Day => 86_400_000,
        }
    }
}

/// Anonymization flags of `export`.
#[derive(Debug, Args)]
pub struct AnonymizeFlags {
    /// Anonymize (the default; accepted for seed 000's `export --anonymize`).
    #[arg(long, conflicts_with = "no_anonymize")]
    pub anonymize: bool,
    /// Export identifiers, names and paths in clear (anonymization is the default).
    #[arg(long)]
    pub no_anonymize: bool,
    /// Hash salt as hex (at least 16 bytes); overrides --salt-file.
    #[arg(long, env = "FLEETSET_EXPORT_SALT", hide_env_values = true)]
    pub salt: Option<String>,
    /// File holding the hash salt (created with 32 random bytes if missing).
    /// Default: <data_dir>/export.salt.
    #[arg(long)]
    pub salt_file: Option<PathBuf>,
    /// Floor every timestamp to this grain.
    #[arg(long, value_enum)]
    pub generalize_time: Option<TimeGrain>,
    /// Keep process records only for processes seen on at least K agents.
    #[arg(long, value_name = "K")]
    pub k_anonymity: Option<usize>,
}

/// Applies the anonymization rules above to record batches.
pub struct Anonymizer {
    salt: Vec<u8>,
    /// `--generalize-time`.
    pub grain: Option<TimeGrain>,
    /// `--k-anonymity`.
    pub k: Option<usize>,
}

impl std::fmt::Debug for Anonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anonymizer")
            .field("salt", &"***")
            .field("grain", &self.grain)
            .field("k", &self.k)
            .finish()
    }
}

fn load_salt(flags: &AnonymizeFlags, data_dir: &Path) -> Result<Vec<u8>> {
    if let Some(hex_salt) = &flags.salt {
        let salt = hex::decode(hex_salt.trim()).context("--salt is not hex")?;
        if salt.len() < 16 {
            bail!("--salt has {} bytes; use at least 16", salt.len());
        }
        return Ok(salt);
    }
    let path = flags
        .salt_file
        .clone()
        .unwrap_or_else(|| data_dir.join("export.salt"));
    fleetset_core::secret::load_or_create(&path, 32, 16)
}

/// `s` with every whitespace-separated token that contains `/` or `\` cut to its last path
/// component.
pub fn strip_paths(s: &str) -> Cow<'_, str> {
    if !s.contains(['/', '\\']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        out.push_str(token.rsplit(['/', '\\']).next().unwrap_or(token));
        rest = &rest[end..];
    }
    Cow::Owned(out)
}

impl Anonymizer {
    /// The anonymizer of `flags`; `None` with `--no-anonymize`. Errors: a bad salt.
    pub fn from_flags(flags: &AnonymizeFlags, data_dir: &Path) -> Result<Option<Anonymizer>> {
        if flags.no_anonymize {
            if flags.generalize_time.is_some() || flags.k_anonymity.is_some() {
                bail!(
                    "--generalize-time and --k-anonymity need anonymization; drop --no-anonymize"
                );
            }
            return Ok(None);
        }
        if flags.k_anonymity == Some(0) {
            bail!("--k-anonymity must be at least 1");
        }
        Ok(Some(Anonymizer {
            salt: load_salt(flags, data_dir)?,
            grain: flags.generalize_time,
            k: flags.k_anonymity,
        }))
    }

    /// An anonymizer with this salt and no generalization (tests, benchmarks).
    pub fn with_salt(salt: &[u8]) -> Anonymizer {
        Anonymizer {
            salt: salt.to_vec(),
            grain: None,
            k: None,
        }
    }

    /// The salted 64-bit hash of an identifier, as 16 lower-case hex digits.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.salt)
            .expect("HMAC accepts keys of any length");
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// A timestamp (Unix ms) floored to the configured grain.
    pub fn generalize_ms(&self, ms: i64) -> i64 {
        self.grain.map_or(ms, |g| ms.div_euclid(g.ms()) * g.ms())
    }

    /// `batch` anonymized column by column (schema unchanged).
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let schema = batch.schema();
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, col)| match f.data_type() {
                DataType::Utf8 => {
                    let strings = col
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("Utf8 column is a StringArray");
                    if HASHED_COLUMNS.contains(&f.name().as_str()) {
                        self.hash_strings(strings)
                    } else {
                        strip_strings(strings)
                    }
                }
                DataType::Timestamp(TimeUnit::Millisecond, tz) if self.grain.is_some() => {
                    let ts = col
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .expect("ms timestamp column");
                    let out: TimestampMillisecondArray = ts
                        .iter()
                        .map(|v| v.map(|v| self.generalize_ms(v)))
                        .collect();
                    Arc::new(out.with_timezone_opt(tz.clone())) as ArrayRef
                }
                _ => col.clone(),
            })
            .collect();
        Ok(RecordBatch::try_new(schema, cols)?)
    }

    /// Hashes every value; rows come grouped by agent, so the previous value is checked
    /// before the per-batch cache.
    fn hash_strings(&self, a: &StringArray) -> ArrayRef {
        let mut cache: HashMap<&str, String> = HashMap::new();
        let mut out = arrow::array::StringBuilder::with_capacity(a.len(), a.len() * 16);
        let mut last: Option<(&str, String)> = None;
        for v in a.iter() {
            let Some(v) = v else {
                out.append_null();
                continue;
            };
            match &last {
                Some((prev, hashed)) if *prev == v => out.append_value(hashed),
                _ => {
                    let hashed = cache.entry(v).or_insert_with(|| self.hash(v)).clone();
                    out.append_value(&hashed);
                    last = Some((v, hashed));
                }
            }
        }
        Arc::new(out.finish())
    }
}

fn strip_strings(a: &StringArray) -> ArrayRef {
    if !a.iter().flatten().any(|v| v.contains(['/', '\\'])) {
        return Arc::new(a.clone());
    }
    let out: StringArray = a.iter().map(|v| v.map(strip_paths)).collect();
    Arc::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_stripped_token_by_token() {
        assert_eq!(strip_paths("/usr/bin/python3 -m app"), "python3 -m app");
        assert_eq!(strip_paths(r"C:\Users\bob\a.exe"), "a.exe");
        assert_eq!(strip_paths("eu-1"), "eu-1");
        assert_eq!(strip_paths("dir/"), "");
    }

    #[test]
    fn batches_get_hashed_ids_stripped_paths_and_generalized_times() {
        use arrow::datatypes::{Field, Schema};
        let mut a = Anonymizer::with_salt(b"0123456789abcdef");
        a.grain = Some(TimeGrain::Hour);
        let schema = Arc::new(Schema::new(vec![
            Field::new(schema::AGENT_ID, DataType::Utf8, false),
            Field::new("kernel", DataType::Utf8, false),
            Field::new(
                schema::WINDOW_START,
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["web-1", "web-1", "db-2"])),
                Arc::new(StringArray::from(vec!["/boot/vmlinuz-6.1", "6.1", "6.1"])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![3_599_999, 3_600_000, 7_300_000])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let out = a.apply(&batch).unwrap();
        let ids = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(ids.value(0), a.hash("web-1"));
        assert_eq!(ids.value(1), ids.value(0));
        assert_eq!(ids.value(2), a.hash("db-2"));
        let kernel = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(kernel.value(0), "vmlinuz-6.1");
        let ts = out
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(ts.values().to_vec(), vec![0, 3_600_000, 7_200_000]);
        assert_eq!(out.schema(), batch.schema());
    }

    #[test]
    fn hashes_are_salted_stable_and_short() {
        let a = Anonymizer::with_salt(b"0123456789abcdef");
        let b = Anonymizer::with_salt(b"fedcba9876543210");
        assert_eq!(a.hash("web-1"), a.hash("web-1"));
        assert_ne!(a.hash("web-1"), b.hash("web-1"));
        assert_eq!(a.hash("web-1").len(), 16);
    }
}
