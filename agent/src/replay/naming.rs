//! Naming replay's metrics: `--metric-map COLUMN=NAME`, else the column header by the rule of
//! [`fleetset_core::names::metric_name`] (`CPU usage [%]` → `cpu_usage_percent`). When several
//! files feed one agent, a header found in more than one of them is prefixed by its file's stem
//! (`vm1_cpu_usage_percent`) so the series stay apart; `--metric-map` is the way to merge them
//! on purpose.

use super::read::{read_header, timestamp_index, Opener};
use super::ReplayFlags;
use anyhow::{bail, Result};
use fleetset_core::names::metric_name;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// The metric of every value column, per file of `files` (in order): header → metric name.
/// Errors: a header cannot be read, or a `--value-columns` entry is in none of the files.
pub(crate) fn plan_names(
    flags: &ReplayFlags,
    files: &[PathBuf],
    open: &Opener,
) -> Result<Vec<HashMap<String, String>>> {
    let mut per_file = Vec::new();
    let mut uses: HashMap<String, usize> = HashMap::new();
    for path in files {
        let headers = read_header(open(path)?, path, &flags.separator)?;
        let ts = match flags.fixed_step() {
            Some(_) => None,
            None => timestamp_index(&headers, &flags.timestamp_column),
        };
        let cols: Vec<String> = headers
            .into_iter()
            .enumerate()
            .filter(|(i, h)| {
                Some(*i) != ts
                    && (flags.value_columns.is_empty() || flags.value_columns.contains(h))
            })
            .map(|(_, h)| h)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for c in &cols {
            *uses.entry(c.clone()).or_default() += 1;
        }
        per_file.push(cols);
    }
    if let Some(missing) = flags.value_columns.iter().find(|c| !uses.contains_key(*c)) {
        bail!(
            "--value-columns {missing:?} is in none of the files (headers are matched exactly, \
             after trimming)"
        );
    }
    let map: HashMap<&str, &str> = flags
        .metric_map
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Ok(files
        .iter()
        .zip(per_file)
        .map(|(path, cols)| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            cols.into_iter()
                .map(|c| {
                    let metric = match map.get(c.as_str()) {
                        Some(m) => m.to_string(),
                        None if uses.get(&c).copied().unwrap_or(0) > 1 => {
                            metric_name(&format!("{stem}_{c}"))
                        }
                        None => metric_name(&c),
                    };
                    (c, metric)
                })
                .collect()
        })
        .collect())
}
