//! The console's chart data, read from the store ([`reader::windows`]) within the token's
//! selector:
//!
//! - `GET /v1/console/metrics?agent=ID[&from=MS&to=MS]`: the metrics of the agent's newest
//!   stored window whose start lies in `[from, to)` (default: the last hour):
//!   `{"agent_id", "window_start_ms": ms|null, "metrics": [name, …]}`.
//! - `GET /v1/console/series?agent=ID&metric=NAME[&from=MS&to=MS]`: the agent's stored windows
//!   with that metric in the range — the newest [`super::MAX_WINDOWS`] of them, fewer when their
//!   points would pass [`super::MAX_POINTS`] (older windows are left out whole; `truncated`
//!   says so) — in start order, each with its downsampled points and the exact statistics of
//!   its raw samples: `{"agent_id", "metric", "from_ms", "to_ms", "windows": [{"seq", "start",
//!   "end", "received_at_ms", "payload_sha256": hex, "stats": {count, min, max, mean, std,
//!   first, last} | null, "points": [[ts_ms, value], …]}], "points": n, "truncated",
//!   "max_windows", "max_points"}` (times Unix ms; a non-finite value is null).
//!
//! Errors (400, counted `console_requests_refused`): a missing or invalid agent id (the
//! contract's rule) or metric name, a bad range.

use super::{range, Console, MAX_POINTS, MAX_WINDOWS};
use crate::live::format::JsonStats;
use crate::store::reader::{self, Query, StoredWindow};
use anyhow::Result;
use axum::extract::rejection::QueryRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use fleetset_proto::contract::is_valid_agent_id;
use fleetset_proto::model::is_valid_metric_name;
use fleetset_proto::Point;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The query string of both routes.
#[derive(Debug, Deserialize)]
pub(super) struct Params {
    agent: Option<String>,
    metric: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
}

/// One window of the chart.
#[derive(Debug, Serialize)]
struct Window {
    seq: u64,
    start: i64,
    end: i64,
    received_at_ms: i64,
    payload_sha256: String,
    stats: Option<JsonStats>,
    points: Vec<Point>,
}

/// The `/v1/console/series` answer.
#[derive(Debug, Serialize)]
struct Series {
    agent_id: String,
    metric: String,
    from_ms: i64,
    to_ms: Option<i64>,
    windows: Vec<Window>,
    points: usize,
    truncated: bool,
    max_windows: usize,
    max_points: usize,
}

/// The `/v1/console/metrics` answer.
#[derive(Debug, Serialize)]
struct Metrics {
    agent_id: String,
    window_start_ms: Option<i64>,
    metrics: Vec<String>,
}

/// The store query of a request, or why it is refused. `metric`: whether the route needs one.
fn query(params: Params, selector: Vec<(String, String)>, metric: bool) -> Result<Query, String> {
    let agent = params.agent.ok_or("the agent parameter is missing")?;
    if !is_valid_agent_id(&agent) {
        return Err(format!(
            "agent {} is not a valid agent id",
            fleetset_proto::contract::shown(&agent)
        ));
    }
    let metrics = match (metric, params.metric) {
        (false, _) => Vec::new(),
        (true, None) => return Err("the metric parameter is missing".into()),
        (true, Some(m)) if !is_valid_metric_name(&m) => {
            return Err(format!(
                "metric {} is not a valid metric name ([a-z][a-z0-9_.]*, at most 128 bytes)",
                fleetset_proto::contract::shown(&m)
            ))
        }
        (true, Some(m)) => vec![m],
    };
    let (from, to) = range(params.from, params.to, fleetset_core::time::now_ms())?;
    Ok(Query {
        from_ms: Some(from),
        to_ms: to,
        agents: vec![agent],
        labels: selector,
        metrics,
    })
}

/// The grant and the store query of a request, or the answer refusing it.
#[allow(clippy::result_large_err)] // a refusal, built once per refused request
fn admit(
    c: &Console,
    headers: &HeaderMap,
    params: Result<axum::extract::Query<Params>, QueryRejection>,
    metric: bool,
) -> Result<Query, Response> {
    let grant = c.grant(headers)?;
    let params = params.map_err(|e| c.bad_request(format!("query: {e}")))?;
    query(params.0, grant.selector, metric).map_err(|why| c.bad_request(why))
}

pub(super) async fn metrics(
    State(c): State<Console>,
    headers: HeaderMap,
    params: Result<axum::extract::Query<Params>, QueryRejection>,
) -> Response {
    let q = match admit(&c, &headers, params, false) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let data_dir = c.web.data_dir.clone();
    c.read(move || newest_metrics(&data_dir, &q)).await
}

pub(super) async fn series(
    State(c): State<Console>,
    headers: HeaderMap,
    params: Result<axum::extract::Query<Params>, QueryRejection>,
) -> Response {
    let q = match admit(&c, &headers, params, true) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let data_dir = c.web.data_dir.clone();
    c.read(move || chart(&data_dir, &q, MAX_WINDOWS, MAX_POINTS))
        .await
}

/// The stored windows of the newest page of at most `per_page` windows matching `q`, and
/// whether older windows matched too.
fn newest_windows(
    data_dir: &Path,
    q: &Query,
    per_page: usize,
) -> Result<(Vec<StoredWindow>, bool)> {
    let pages = reader::window_pages(data_dir, q, per_page)?;
    let Some(&(from, to)) = pages.last() else {
        return Ok((Vec::new(), false));
    };
    let page = Query {
        from_ms: Some(from),
        to_ms: Some(to),
        ..q.clone()
    };
    Ok((reader::windows(data_dir, &page)?, pages.len() > 1))
}

/// The `/v1/console/metrics` answer for `q` (one agent).
fn newest_metrics(data_dir: &Path, q: &Query) -> Result<Metrics> {
    let (windows, _) = newest_windows(data_dir, q, 1)?;
    let newest = windows.last();
    let mut metrics: Vec<String> = newest
        .map(|w| {
            let s = &w.snapshot;
            s.stats.keys().chain(s.data.keys()).cloned().collect()
        })
        .unwrap_or_default();
    metrics.sort();
    metrics.dedup();
    Ok(Metrics {
        agent_id: q.agents.concat(),
        window_start_ms: newest.map(|w| w.snapshot.start),
        metrics,
    })
}

/// The `/v1/console/series` answer for `q` (one agent, one metric): at most `max_windows`
/// windows and `max_points` points.
fn chart(data_dir: &Path, q: &Query, max_windows: usize, max_points: usize) -> Result<Series> {
    let metric = q.metrics.concat();
    let (stored, older) = newest_windows(data_dir, q, max_windows)?;
    let (windows, points, cut) = bound(stored, &metric, max_windows, max_points);
    Ok(Series {
        agent_id: q.agents.concat(),
        metric,
        from_ms: q.from_ms.unwrap_or_default(),
        to_ms: q.to_ms,
        windows,
        points,
        truncated: older || cut,
        max_windows,
        max_points,
    })
}

/// The newest of `stored` (in start order) that carry `metric`, as chart windows in start
/// order: at most `max_windows` of them and `max_points` points in all, an older window left
/// out whole when its points would pass the bound. Also the points kept, and whether any
/// window was left out.
fn bound(
    stored: Vec<StoredWindow>,
    metric: &str,
    max_windows: usize,
    max_points: usize,
) -> (Vec<Window>, usize, bool) {
    let mut windows: Vec<Window> = Vec::new();
    let mut points = 0usize;
    let mut cut = false;
    for w in stored.into_iter().rev() {
        let mut s = w.snapshot;
        let stats = s.stats.remove(metric);
        let data = s.data.remove(metric).unwrap_or_default();
        if stats.is_none() && data.is_empty() {
            continue;
        }
        if points.saturating_add(data.len()) > max_points || windows.len() >= max_windows {
            cut = true;
            break;
        }
        points = points.saturating_add(data.len());
        windows.push(Window {
            seq: s.seq,
            start: s.start,
            end: s.end,
            received_at_ms: w.received_at_ms,
            payload_sha256: hex::encode(&w.payload_sha256),
            stats: stats.as_ref().map(JsonStats::from),
            points: data,
        });
    }
    windows.reverse();
    (windows, points, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetset_proto::{Snapshot, WindowStats};

    /// A stored window starting at `k` s with `n` points of `cpu` (and always a `mem` series).
    fn stored(k: i64, n: usize) -> StoredWindow {
        let mut s = Snapshot {
            agent_id: "a".into(),
            seq: k as u64,
            start: k * 1000,
            end: (k + 1) * 1000,
            ..Default::default()
        };
        let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
        if let Some(st) = WindowStats::from_values(&values) {
            s.stats.insert("cpu".into(), st);
        }
        s.data.insert(
            "cpu".into(),
            (0..n)
                .map(|i| Point {
                    ts_ms: k * 1000 + i as i64,
                    value: i as f64,
                })
                .collect(),
        );
        s.data.insert(
            "mem".into(),
            vec![Point {
                ts_ms: k * 1000,
                value: 1.0,
            }],
        );
        StoredWindow {
            snapshot: s,
            payload_sha256: vec![0xab; 32],
            encoding: "msgpack".into(),
            received_at_ms: (k + 2) * 1000,
        }
    }

    #[test]
    fn the_newest_windows_are_kept_whole_within_both_bounds() {
        let all = || (1..=5).map(|k| stored(k, 10)).collect::<Vec<_>>();
        let (w, points, cut) = bound(all(), "cpu", 10, 1000);
        assert_eq!((w.len(), points, cut), (5, 50, false));
        assert_eq!(w[0].start, 1000, "start order");
        assert_eq!(
            w[4].stats.as_ref().map(|s| (s.count, s.max)),
            Some((10, 9.0))
        );
        assert_eq!(w[4].payload_sha256, "ab".repeat(32));
        // 35 points: three whole windows, the newest.
        let (w, points, cut) = bound(all(), "cpu", 10, 35);
        assert_eq!((w.len(), points, cut), (3, 30, true));
        assert_eq!(w.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        let (w, _, cut) = bound(all(), "cpu", 2, 1000);
        assert_eq!((w.len(), cut), (2, true));
        // Windows without the metric are not windows of its chart.
        let (w, points, cut) = bound(all(), "disk", 10, 1000);
        assert_eq!((w.len(), points, cut), (0, 0, false));
        let (w, points, _) = bound(vec![stored(1, 0), stored(2, 3)], "cpu", 10, 1000);
        assert_eq!(
            (w.len(), points),
            (1, 3),
            "no stats and no points: left out"
        );
    }
}
