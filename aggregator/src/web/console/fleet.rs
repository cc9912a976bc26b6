//! `GET /v1/console/agents[?from=MS&to=MS]`: the fleet the console lists.
//!
//! With the control plane on, from its inventory (health, last error, rejects per reason,
//! frames per second, as `fleet agents` shows them); without it, from the store: every agent
//! with a window whose start lies in `[from, to)` (default: the last hour,
//! [`super::DEFAULT_RANGE_MS`]), its newest window start and when that was committed — the
//! store knows no health, so `state` is `stored` and `healthy` is null. Either way at most
//! [`super::MAX_AGENTS`] agents by id (`truncated` says when more matched), restricted to the
//! token's selector. Fleet-wide counters (`totals`: frames received, committed, duplicate,
//! rejected by reason) come with answers to tokens without a selector only.
//!
//! Answer: `{"source": "control"|"store", "now_ms", "agents": [{agent_id, labels, version,
//! state, healthy, last_error, last_seen_ms, last_window_start_ms, frames_per_second,
//! rejects: {reason: n}}], "truncated", "totals": {counter: n}}` (times Unix ms).

use super::{range, Console, MAX_AGENTS};
use crate::store::reader::{column, Query, Scan};
use crate::store::schema::{self, Table};
use anyhow::{bail, Result};
use arrow::array::{Array, StringArray, TimestampMillisecondArray};
use axum::extract::rejection::QueryRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The query string.
#[derive(Debug, Deserialize)]
pub(super) struct Params {
    from: Option<i64>,
    to: Option<i64>,
}

/// One agent of the answer.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
struct Agent {
    agent_id: String,
    labels: BTreeMap<String, String>,
    version: String,
    /// `healthy`, `unhealthy`, `stale`, `unknown` (control plane) or `stored` (store).
    state: String,
    healthy: Option<bool>,
    last_error: String,
    last_seen_ms: i64,
    last_window_start_ms: i64,
    frames_per_second: Option<f64>,
    rejects: BTreeMap<String, u64>,
}

/// The answer.
#[derive(Debug, Serialize)]
struct Fleet {
    source: &'static str,
    now_ms: i64,
    agents: Vec<Agent>,
    truncated: bool,
    totals: BTreeMap<String, u64>,
}

/// Fleet-wide counters shown above the fleet table.
const TOTALS: [&str; 4] = [
    "frames_received",
    "frames_committed",
    "frames_duplicate",
    "window_rows",
];

pub(super) async fn agents(
    State(c): State<Console>,
    headers: HeaderMap,
    params: Result<axum::extract::Query<Params>, QueryRejection>,
) -> Response {
    let grant = match c.grant(&headers) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let params = match params {
        Ok(p) => p.0,
        Err(e) => return c.bad_request(format!("query: {e}")),
    };
    let now = fleetset_core::time::now_ms();
    let (from, to) = match range(params.from, params.to, now) {
        Ok(r) => r,
        Err(why) => return c.bad_request(why),
    };
    let totals: BTreeMap<String, u64> = match grant.selector.is_empty() {
        true => c
            .web
            .counters
            .snapshot()
            .into_iter()
            .filter(|(k, _)| TOTALS.contains(&k.as_str()) || k.starts_with("rejected_"))
            .collect(),
        false => BTreeMap::new(),
    };
    if let Some(plane) = &c.web.control {
        let selector: BTreeMap<String, String> = grant.selector.into_iter().collect();
        let mut all = plane.agents(&selector);
        let truncated = all.len() > MAX_AGENTS;
        all.truncate(MAX_AGENTS);
        let agents = all
            .into_iter()
            .map(|r| Agent {
                agent_id: r.agent_id,
                labels: r.labels,
                version: r.version,
                state: r.state,
                healthy: r.healthy,
                last_error: r.last_error,
                last_seen_ms: r.last_seen_ms,
                last_window_start_ms: r.last_window_start_ms,
                frames_per_second: Some(r.frames_per_second),
                rejects: r.rejects,
            })
            .collect();
        return super::json(
            axum::http::StatusCode::OK,
            Fleet {
                source: "control",
                now_ms: now,
                agents,
                truncated,
                totals,
            },
        );
    }
    let data_dir = c.web.data_dir.clone();
    let query = Query {
        from_ms: Some(from),
        to_ms: to,
        labels: grant.selector,
        // No statistics columns: "" is no metric name (the contract refuses it).
        metrics: vec![String::new()],
        ..Query::default()
    };
    c.read(move || {
        let (agents, truncated) = stored_agents(&data_dir, &query, MAX_AGENTS)?;
        Ok(Fleet {
            source: "store",
            now_ms: now,
            agents,
            truncated,
            totals,
        })
    })
    .await
}

/// The agents of the `windows` rows matching `query`, each with its newest window start and
/// latest commit time, at most `max` by id; and whether more matched. Errors: an unreadable
/// committed file, or one without the key columns.
fn stored_agents(data_dir: &Path, query: &Query, max: usize) -> Result<(Vec<Agent>, bool)> {
    let mut agents: BTreeMap<String, Agent> = BTreeMap::new();
    let mut truncated = false;
    for b in Scan::open(data_dir, Table::Windows, query)?.batches(|_| {}) {
        let b = b?;
        let (Some(ids), Some(starts)) = (
            column::<StringArray>(&b, schema::AGENT_ID),
            column::<TimestampMillisecondArray>(&b, schema::WINDOW_START),
        ) else {
            bail!("a windows file lacks {} or its type", schema::AGENT_ID);
        };
        let received = column::<TimestampMillisecondArray>(&b, schema::RECEIVED_AT);
        let schema = b.schema();
        let labels: Vec<(&str, &StringArray)> = schema
            .fields()
            .iter()
            .filter(|f| schema::parse_stat_column(f.name()).is_none())
            .filter_map(|f| {
                let key = schema::label_key(f.name())?;
                Some((key, column::<StringArray>(&b, f.name())?))
            })
            .collect();
        for i in 0..b.num_rows() {
            if !ids.is_valid(i) || !starts.is_valid(i) {
                continue;
            }
            let id = ids.value(i);
            if !agents.contains_key(id) {
                if agents.len() >= max && agents.keys().next_back().is_some_and(|k| k.as_str() < id)
                {
                    truncated = true;
                    continue;
                }
                agents.insert(
                    id.to_string(),
                    Agent {
                        agent_id: id.to_string(),
                        state: "stored".into(),
                        ..Agent::default()
                    },
                );
                if agents.len() > max {
                    agents.pop_last();
                    truncated = true;
                }
            }
            let Some(a) = agents.get_mut(id) else {
                continue;
            };
            let start = starts.value(i);
            if start >= a.last_window_start_ms {
                a.last_window_start_ms = start;
                a.labels = labels
                    .iter()
                    .filter(|(_, c)| c.is_valid(i))
                    .map(|(k, c)| (k.to_string(), c.value(i).to_string()))
                    .collect();
            }
            if let Some(r) = received.filter(|r| r.is_valid(i)) {
                a.last_seen_ms = a.last_seen_ms.max(r.value(i));
            }
        }
    }
    Ok((agents.into_values().collect(), truncated))
}
