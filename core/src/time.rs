//! Time helpers: the wall clock in Unix milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as Unix ms (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Parses a wall-clock time written by a person or a CSV file to Unix ms: RFC 3339,
/// `YYYY-MM-DD HH:MM:SS[.f]`, `YYYY-MM-DDTHH:MM:SS[.f]` or `YYYY-MM-DD` (no offset: UTC).
///
/// Errors: any other shape, with the text and the accepted shapes named.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            format!("time {s:?} is not RFC 3339, YYYY-MM-DD HH:MM:SS[.f] or YYYY-MM-DD (UTC)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_usual_shapes() {
        let t = 1_700_000_000_000;
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(t));
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Ok(t));
        assert_eq!(parse_time("2023-11-14 22:13:20"), Ok(t));
        assert_eq!(parse_time("2023-11-14T22:13:20.000"), Ok(t));
        assert_eq!(parse_time("2023-11-14"), Ok(1_699_920_000_000));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(now_ms() > t);
    }
}
