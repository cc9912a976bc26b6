//! The one set of rules for names that reach the store: agent ids, metric names and operator
//! labels. Every producer (host agent, CSV replay, OTLP receiver, live tail) goes through these,
//! so a name means the same thing wherever it came from.
//!
//! A metric name is 1–128 characters of `[a-z0-9_.]` starting with a letter
//! (`fleetset_proto::model::is_valid_metric_name`, which the aggregator enforces on every frame).

use fleetset_proto::model::MAX_METRIC_NAME_LEN;

/// `name` as a part of an agent id: lower-case ASCII letters, digits and `-` (any other
/// character becomes `-`), at most `max` characters.
pub fn id_component(name: &str, max: usize) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(max)
        .collect()
}

/// `s` as one component of a metric name: lower case, `[a-z0-9_]` kept (and `.` when `dots`),
/// any other character `_`. Not truncated and not prefixed: see [`metric_name`].
pub fn metric_component(s: &str, dots: bool) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (dots && c == '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Any text (a CSV column, a file stem, an OTLP metric name) made into the start of a metric
/// name: trimmed, [`metric_component`] with dots kept, and `m_` in front when it does not start
/// with a letter. Not truncated (the OTLP receiver appends attributes, then checks the length).
pub fn metric_stem(raw: &str) -> String {
    let mut s = metric_component(raw.trim(), true);
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "m_");
    }
    s
}

/// A CSV column header made into a metric name by one rule that keeps units readable
/// (`fleetset-agent replay`'s automatic names; README "Replaying CSV files"):
///
/// 1. A trailing unit in brackets or parentheses is split off (`CPU usage [%]` → `CPU usage` +
///    `%`). In the unit, `/` reads `per`, a lone `s` reads `sec`, `°C`/`°F` read
///    `celsius`/`fahrenheit` and `µ` reads `u`; the unit then follows the name.
/// 2. Everywhere, `%` reads `percent`.
/// 3. Lower case; every run of characters outside `[a-z0-9.]` becomes one `_` (so no `__`, which
///    the stats columns use as their separator); `_` at either end is dropped.
/// 4. `m_` in front when it does not start with a letter; cut to 128 characters. Always a valid
///    metric name (`fleetset_proto::model::is_valid_metric_name`).
///
/// `CPU usage [%]` → `cpu_usage_percent`, `Network received throughput [KB/s]` →
/// `network_received_throughput_kb_per_sec`, `CPU capacity provisioned [MHZ]` →
/// `cpu_capacity_provisioned_mhz`, `latency (ms)` → `latency_ms`, `5min` → `m_5min`.
pub fn metric_name(raw: &str) -> String {
    let raw = raw.trim();
    let (base, unit) = split_unit(raw);
    let mut text = base.to_string();
    if let Some(unit) = unit {
        text.push(' ');
        text.push_str(&unit_words(unit));
    }
    let mut s = String::with_capacity(text.len());
    for c in text.replace('%', " percent ").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
            s.push(c);
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    let s = s.trim_matches('_');
    let mut s = match s.starts_with(|c: char| c.is_ascii_lowercase()) {
        true => s.to_string(),
        false => format!("m_{s}"),
    };
    // Only ASCII is left, so any byte index is a character boundary.
    s.truncate(MAX_METRIC_NAME_LEN);
    s
}

/// `header` split into its name and a trailing unit in `[…]` or `(…)` (the unit without the
/// brackets, trimmed; `None` when there is none or it is empty): `CPU usage [%]` →
/// (`CPU usage`, `%`).
pub fn split_unit(header: &str) -> (&str, Option<&str>) {
    let h = header.trim();
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let Some(inner) = h.strip_suffix(close) {
            if let Some(at) = inner.rfind(open) {
                let unit = inner[at + open.len_utf8()..].trim();
                if !unit.is_empty() {
                    return (inner[..at].trim_end(), Some(unit));
                }
            }
        }
    }
    (h, None)
}

/// A unit written out in words: `/` → ` per `, a lone `s` → `sec`, `°C` → `celsius`, `°F` →
/// `fahrenheit`, `µ`/`μ` → `u` (`KB/s` → `KB per sec`).
fn unit_words(unit: &str) -> String {
    unit.split('/')
        .map(|part| {
            let part = part.trim().replace(['µ', 'μ'], "u");
            match part.as_str() {
                "s" | "S" => "sec".to_string(),
                "°C" | "°c" => "celsius".to_string(),
                "°F" | "°f" => "fahrenheit".to_string(),
                _ => part,
            }
        })
        .collect::<Vec<_>>()
        .join(" per ")
}

/// Parses an operator label `key=value` (e.g. `site=eu-1`). Errors: no `=`, or an empty key.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not key=value"))?;
    if k.trim().is_empty() {
        return Err(format!("label {s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_valid() {
        assert_eq!(id_component("Web_01.example", 8), "web-01-e");
        assert_eq!(metric_name("9lives"), "m_9lives");
        assert_eq!(metric_name("system.cpu.time"), "system.cpu.time");
        assert!(fleetset_proto::model::is_valid_metric_name(&metric_name(
            &"x".repeat(500)
        )));
        for odd in ["", "[%]", "__", "µ", "ü [€/s]", "(", "a [b"] {
            let m = metric_name(odd);
            assert!(
                fleetset_proto::model::is_valid_metric_name(&m),
                "{odd:?} → {m:?}"
            );
        }
        assert_eq!(metric_component("a.b-c", false), "a_b_c");
    }

    /// The header shapes of real traces: Bitbrains' per-VM files (GWA-T-12), collectd's CSV
    /// plugin, the Numenta Anomaly Benchmark.
    #[test]
    fn real_headers_keep_their_units_readable() {
        for (header, name) in [
            // Bitbrains (fastStorage / Rnd): `;\t`-separated, units in brackets.
            ("Timestamp [ms]", "timestamp_ms"),
            ("CPU cores", "cpu_cores"),
            (
                "CPU capacity provisioned [MHZ]",
                "cpu_capacity_provisioned_mhz",
            ),
            ("CPU usage [MHZ]", "cpu_usage_mhz"),
            (" CPU usage [%] ", "cpu_usage_percent"),
            (
                "Memory capacity provisioned [KB]",
                "memory_capacity_provisioned_kb",
            ),
            ("Memory usage [KB]", "memory_usage_kb"),
            (
                "Disk read throughput [KB/s]",
                "disk_read_throughput_kb_per_sec",
            ),
            (
                "Disk write throughput [KB/s]",
                "disk_write_throughput_kb_per_sec",
            ),
            (
                "Network received throughput [KB/s]",
                "network_received_throughput_kb_per_sec",
            ),
            (
                "Network transmitted throughput [KB/s]",
                "network_transmitted_throughput_kb_per_sec",
            ),
            // collectd CSV plugin: `epoch,value` or one column per data source.
            ("value", "value"),
            ("shortterm", "shortterm"),
            ("rx", "rx"),
            // NAB and other shapes.
            (
                "ec2_cpu_utilization_24ae8d_value",
                "ec2_cpu_utilization_24ae8d_value",
            ),
            ("CPU Util %", "cpu_util_percent"),
            ("latency (ms)", "latency_ms"),
            ("Temperature (°C)", "temperature_celsius"),
            ("wait [µs]", "wait_us"),
            ("requests [1/s]", "requests_1_per_sec"),
            ("a  b--c", "a_b_c"),
            ("5min", "m_5min"),
        ] {
            assert_eq!(metric_name(header), name, "{header:?}");
        }
        assert_eq!(split_unit("CPU usage [%]"), ("CPU usage", Some("%")));
        assert_eq!(split_unit("Timestamp [ms]"), ("Timestamp", Some("ms")));
        assert_eq!(split_unit("value"), ("value", None));
        assert_eq!(split_unit("x []"), ("x []", None));
    }

    #[test]
    fn labels_need_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_label("site=eu-1").unwrap(),
            ("site".into(), "eu-1".into())
        );
        assert_eq!(parse_label("k=").unwrap(), ("k".into(), String::new()));
        assert!(parse_label("nokey").unwrap_err().contains("key=value"));
        assert!(parse_label("=v").unwrap_err().contains("empty key"));
    }
}
