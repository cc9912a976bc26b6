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

/// [`metric_stem`] cut to 128 characters: always a valid metric name.
pub fn metric_name(raw: &str) -> String {
    let mut s = metric_stem(raw);
    s.truncate(MAX_METRIC_NAME_LEN);
    s
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
        assert_eq!(metric_name(" CPU usage [%] "), "cpu_usage____");
        assert_eq!(metric_name("9lives"), "m_9lives");
        assert_eq!(metric_name("system.cpu.time"), "system.cpu.time");
        assert!(fleetset_proto::model::is_valid_metric_name(&metric_name(
            &"x".repeat(500)
        )));
        assert_eq!(metric_component("a.b-c", false), "a_b_c");
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
