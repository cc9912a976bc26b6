//! Sending one replaying agent's samples: cut into windows of `window.length` on the file's
//! time axis, framed in batches of [`BATCH_WINDOWS`] through the [`Pipeline`] (one spool sync and
//! one state write per batch; `--rate` frames one window at a time), at most `--max-ahead`
//! frames and half of `spool.max_bytes` ahead of the acks, so a slow or absent aggregator makes
//! replay wait instead of the spool dropping frames (`--max-ahead 0`: no waiting, the spool's
//! bound drops the oldest, counted); then waits for the last ack. Also the host attributes of
//! `--host`.

use super::read::CsvRead;
use super::ReplayFlags;
use crate::config::AgentConfig;
use crate::pipeline::Pipeline;
use crate::run::AGENT_VERSION;
use anyhow::{bail, Result};
use fleetset_core::window::{window_start, ClosedWindow};
use fleetset_proto::HostInfo;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Windows framed per batch (one spool sync — `syncfs` — and one `next_seq`/`last_window` write
/// for all of them).
pub const BATCH_WINDOWS: usize = 256;

/// What sending one agent's windows did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sent {
    /// Windows framed and spooled.
    pub windows: u64,
    /// Windows an earlier (interrupted) replay framed already.
    pub already_sent: u64,
    /// Shutdown came before every frame was acked (the rest is sent by the next run).
    pub interrupted: bool,
}

/// The `--host` keys.
const HOST_KEYS: [&str; 5] = ["cpu_count", "memory_total_mb", "hostname", "os", "kernel"];

/// Parses one `--host` item `KEY=VALUE`. Errors: no `=`, an unknown key (the known ones
/// named), a count that is not a whole number.
pub(crate) fn parse_host(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--host {s:?} is not KEY=VALUE"))?;
    let (k, v) = (k.trim(), v.trim());
    if !HOST_KEYS.contains(&k) {
        return Err(format!(
            "--host {k:?}: unknown host attribute (known: {})",
            HOST_KEYS.join(", ")
        ));
    }
    let counted = match k {
        "cpu_count" => v.parse::<u32>().is_ok_and(|n| n > 0),
        "memory_total_mb" => v.parse::<u64>().is_ok_and(|n| n > 0),
        _ => true,
    };
    if !counted {
        return Err(format!("--host {k}={v:?}: a whole number above 0"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The host attributes of the replayed windows: `--host`, else hostname `replay` and zeros.
/// Errors: a count out of range.
pub(crate) fn host_info(items: &[(String, String)], cfg: &AgentConfig) -> Result<HostInfo> {
    let mut host = HostInfo {
        hostname: "replay".into(),
        agent_version: AGENT_VERSION.into(),
        labels: cfg.labels.clone(),
        ..Default::default()
    };
    for (k, v) in items {
        match k.as_str() {
            "cpu_count" => host.cpu_count = v.parse()?,
            "memory_total_mb" => host.memory_total_mb = v.parse()?,
            "hostname" => host.hostname.clone_from(v),
            "os" => host.os.clone_from(v),
            "kernel" => host.kernel.clone_from(v),
            _ => bail!("--host {k:?}: unknown host attribute"),
        }
    }
    Ok(host)
}

/// The host attributes `host` lacks (0): `cpu_count`, `memory_total_mb`.
pub(crate) fn unknown_host_attributes(host: &HostInfo) -> Vec<&'static str> {
    let mut out = Vec::new();
    if host.cpu_count == 0 {
        out.push("cpu_count");
    }
    if host.memory_total_mb == 0 {
        out.push("memory_total_mb");
    }
    out
}

/// Replays `read` as agent `agent_id` under `cfg` (see the module docs).
pub(crate) async fn send(
    cfg: &AgentConfig,
    agent_id: &str,
    host: HostInfo,
    read: CsvRead,
    flags: &ReplayFlags,
    shutdown: &CancellationToken,
) -> Result<Sent> {
    let CsvRead {
        metrics,
        mut samples,
        step_ms,
        ..
    } = read;
    samples.sort_by_key(|s| s.0); // stable: repeated timestamps keep file order
    let window_ms = i64::try_from(cfg.window.length.as_millis()).unwrap_or(i64::MAX);
    let mut pipeline = Pipeline::start(cfg, agent_id.to_string(), host, None)?;
    pipeline.set_sample_interval_ms(u64::try_from(step_ms.max(1)).unwrap_or(1));
    let pause = flags
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let batch_size = if pause.is_some() { 1 } else { BATCH_WINDOWS };
    let max_ahead = flags.max_ahead;
    let max_bytes = cfg.spool.max_bytes / 2;
    let mut sent = Sent::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut i = 0;
    while i < samples.len() {
        if shutdown.is_cancelled() {
            info!(
                agent_id,
                "replay interrupted; spooled frames are sent by the next run"
            );
            sent.interrupted = true;
            return Ok(sent);
        }
        let start = window_start(samples[i].0, window_ms);
        let mut raw: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        while i < samples.len() && window_start(samples[i].0, window_ms) == start {
            let (ts, m, v) = samples[i];
            raw.entry(metrics[m].clone()).or_default().push((ts, v));
            i += 1;
        }
        batch.push(ClosedWindow {
            start,
            end: start.saturating_add(window_ms),
            raw,
            processes: Vec::new(),
        });
        if batch.len() < batch_size && i < samples.len() {
            continue;
        }
        // Flow control: frames and bytes ahead of the acks.
        loop {
            let (frames, bytes) = pipeline.spooled_frames_and_bytes();
            let per_frame = bytes.checked_div(frames as u64).unwrap_or(0);
            let incoming = per_frame.saturating_mul(batch.len() as u64);
            let full = frames + batch.len() > max_ahead || bytes + incoming > max_bytes;
            if max_ahead == 0 || frames == 0 || !full || shutdown.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (framed, skipped) = match (pause, batch.pop()) {
            // Paced: one window at a time, with its own fsyncs (no syncfs per window).
            (Some(_), Some(w)) => match pipeline.submit(w)? {
                true => (1, 0),
                false => (0, 1),
            },
            (_, last) => {
                batch.extend(last);
                pipeline.submit_batch(std::mem::take(&mut batch))?
            }
        };
        sent.windows += framed;
        sent.already_sent += skipped;
        match pause {
            Some(p) => tokio::time::sleep(p).await,
            // One thread runs the agent: let the send loop send this batch while the next is
            // framed (it would wait for the whole input otherwise).
            None => tokio::task::yield_now().await,
        }
    }
    info!(
        agent_id,
        windows = sent.windows,
        "replay input framed; waiting for the last acks"
    );
    tokio::select! {
        _ = pipeline.finish() => {}
        _ = shutdown.cancelled() => {
            info!(agent_id, "replay interrupted while draining; unacked frames stay spooled");
            sent.interrupted = true;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_attributes() {
        assert_eq!(
            parse_host("cpu_count=2").unwrap(),
            ("cpu_count".into(), "2".into())
        );
        assert!(parse_host("cpus=2").unwrap_err().contains("cpu_count"));
        assert!(parse_host("cpu_count=0").unwrap_err().contains("above 0"));
        assert!(parse_host("memory_total_mb=lots").is_err());
        assert!(parse_host("memory_total_mb=8589934592").is_ok());
        let cfg = AgentConfig::default();
        let h = host_info(
            &[
                ("cpu_count".into(), "2".into()),
                ("memory_total_mb".into(), "8192".into()),
            ],
            &cfg,
        )
        .unwrap();
        assert_eq!((h.cpu_count, h.memory_total_mb), (2, 8192));
        assert!(unknown_host_attributes(&h).is_empty());
        let h = host_info(&[], &cfg).unwrap();
        assert_eq!(
            unknown_host_attributes(&h),
            ["cpu_count", "memory_total_mb"]
        );
        assert_eq!(h.hostname, "replay");
    }
}
