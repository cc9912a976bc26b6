//! The ZAP handler (ZeroMQ Authentication Protocol, RFC 27) of the aggregator's libzmq context:
//! one thread on a REP socket bound at `inproc://zeromq.zap.01`, the address libzmq sends every
//! CURVE handshake of the context's sockets to. It admits a client key only if the allow file
//! ([`super::curve`]) lists it for the socket's ZAP domain — agent keys on the ROUTER's
//! ([`super::curve::INGEST_DOMAIN`]), subscriber keys on the PUB's
//! ([`super::curve::LIVE_DOMAIN`]) — and answers with the key's User-Id (the agent id, which the
//! ROUTER reads from each message's `User-Id` property). Every refusal is counted
//! (`zmq_auth_denied`). The thread re-reads the allow file every `reload_interval` when its size
//! or mtime changed; a file that cannot be read or parsed keeps the old list
//! (`curve_allow_reload_failures`). Requests queue in the REP socket up to `zap_queue`.

use super::curve::{read_allow, AllowList, Client, CurveConfig, INGEST_DOMAIN, LIVE_DOMAIN};
use crate::counters::Counters;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tracing::{debug, info, warn};

/// libzmq's fixed ZAP endpoint (RFC 27).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The running ZAP thread; dropping this stops it (within 200 ms).
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The allow file's identity for change detection.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// What the ZAP thread owns.
struct State {
    socket: zmq::Socket,
    allow: AllowList,
    path: PathBuf,
    seen: Stamp,
    cfg: CurveConfig,
    counters: Arc<Counters>,
}

/// Binds the ZAP endpoint in `ctx` and starts its thread, with the allow file of `cfg` read
/// once now. Must run before the context's CURVE sockets bind. Errors: the allow file cannot
/// be read or parsed (named), the endpoint is taken.
pub fn start(ctx: &zmq::Context, cfg: &CurveConfig, counters: Arc<Counters>) -> Result<ZapHandler> {
    let path = cfg
        .allow_file
        .clone()
        .context("security.curve.allow_file is not set")?;
    let seen = stamp(&path);
    let allow = read_allow(&path, cfg.max_allow_bytes).context("security.curve.allow_file")?;
    let socket = ctx.socket(zmq::REP)?;
    socket.set_rcvhwm(cfg.zap_queue)?;
    socket.set_sndhwm(cfg.zap_queue)?;
    socket.set_linger(0)?;
    socket
        .bind(ZAP_ENDPOINT)
        .with_context(|| format!("binding the ZAP handler at {ZAP_ENDPOINT}"))?;
    info!(clients = allow.len(), "CURVE allow file loaded");
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let mut state = State {
        socket,
        allow,
        path,
        seen,
        cfg: cfg.clone(),
        counters,
    };
    // The socket holds the context, which outlives it.
    std::thread::Builder::new()
        .name("zmq-zap".into())
        .spawn(move || state.serve(&thread_stop))?;
    Ok(ZapHandler { stop })
}

/// The reply's status: `200` with the User-Id, or `400` with why.
fn decide(
    allow: &AllowList,
    domain: &[u8],
    mechanism: &[u8],
    key: &[u8],
) -> Result<String, &'static str> {
    if mechanism != b"CURVE" {
        return Err("CURVE required");
    }
    let key = <[u8; 32]>::try_from(key).map_err(|_| "malformed CURVE key")?;
    match (allow.get(&key), domain) {
        (Some(c @ Client::Agent(_)), d) if d == INGEST_DOMAIN.as_bytes() => Ok(c.user_id()),
        (Some(c @ Client::Subscriber(_)), d) if d == LIVE_DOMAIN.as_bytes() => Ok(c.user_id()),
        (Some(_), _) => Err("key not admitted on this socket"),
        (None, _) => Err("key not in the allow file"),
    }
}

impl State {
    fn serve(&mut self, stop: &AtomicBool) {
        let mut checked = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if checked.elapsed() >= self.cfg.reload_interval {
                self.reload_if_changed();
                checked = Instant::now();
            }
            match self.socket.poll(zmq::POLLIN, 200) {
                Ok(n) if n > 0 => {}
                Ok(_) => continue,
                Err(e) => {
                    debug!(error = %e, "zap poll");
                    continue;
                }
            }
            let request = match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "zap receive");
                    continue;
                }
            };
            let reply = self.answer(&request);
            if let Err(e) = self.socket.send_multipart(reply, 0) {
                debug!(error = %e, "zap reply");
            }
        }
    }

    /// The reply to one request `[version, request_id, domain, address, identity, mechanism,
    /// credentials…]` (RFC 27): `[version, request_id, status, text, user_id, metadata]`.
    fn answer(&self, request: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let part = |i: usize| request.get(i).map_or(&[][..], |p| p.as_slice());
        let decided = match part(0) {
            b"1.0" => decide(&self.allow, part(2), part(5), part(6)),
            _ => Err("unsupported ZAP version"),
        };
        let (code, text, user) = match decided {
            Ok(user) => ("200", "OK", user),
            Err(why) => {
                Counters::add(&self.counters.zmq_auth_denied, 1);
                let peer = String::from_utf8_lossy(part(3));
                let domain = String::from_utf8_lossy(part(2));
                debug!(%peer, %domain, why, "ZeroMQ client refused");
                ("400", why, String::new())
            }
        };
        vec![
            b"1.0".to_vec(),
            part(1).to_vec(),
            code.as_bytes().to_vec(),
            text.as_bytes().to_vec(),
            user.into_bytes(),
            Vec::new(),
        ]
    }

    fn reload_if_changed(&mut self) {
        let now = stamp(&self.path);
        if now == self.seen {
            return;
        }
        self.seen = now;
        match read_allow(&self.path, self.cfg.max_allow_bytes) {
            Ok(allow) => {
                info!(clients = allow.len(), "CURVE allow file reloaded");
                self.allow = allow;
                Counters::add(&self.counters.curve_allow_reloads, 1);
            }
            Err(e) => {
                Counters::add(&self.counters.curve_allow_reload_failures, 1);
                warn!(
                    error = format!("{e:#}"),
                    "CURVE allow file not reloaded; the previous list stays in use"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_keys_in_their_domain() {
        let mut allow = AllowList::new();
        allow.insert([1; 32], Client::Agent("a".into()));
        allow.insert([2; 32], Client::Subscriber("g".into()));
        let ingest = INGEST_DOMAIN.as_bytes();
        let live = LIVE_DOMAIN.as_bytes();
        assert_eq!(decide(&allow, ingest, b"CURVE", &[1; 32]), Ok("a".into()));
        assert_eq!(
            decide(&allow, live, b"CURVE", &[2; 32]),
            Ok("subscriber:g".into())
        );
        assert!(decide(&allow, live, b"CURVE", &[1; 32]).is_err());
        assert!(decide(&allow, ingest, b"CURVE", &[2; 32]).is_err());
        assert!(decide(&allow, ingest, b"CURVE", &[3; 32]).is_err());
        assert!(decide(&allow, ingest, b"NULL", &[1; 32]).is_err());
        assert!(decide(&allow, ingest, b"CURVE", &[1; 31]).is_err());
    }
}
