//! The ZeroMQ link's settings: `[transport.zmq]` (libzmq socket limits, timers) and
//! `[transport.curve]` (CURVE keys: the aggregator's pinned public key, this agent's key pair).

use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[transport.zmq]`: the libzmq DEALER's limits and timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct ZmqConfig {
    /// Largest message part accepted from the aggregator (`ZMQ_MAXMSGSIZE`; an ack is ~100 bytes); a larger one drops the connection before it is read.
    #[key(default = 64 << 10, unit = "bytes", min = 1024, max = 1 << 30, limit = "-")]
    pub max_ack_bytes: i64,
    /// Messages queued towards the aggregator and from it in libzmq (`ZMQ_SNDHWM`, `ZMQ_RCVHWM`); a send beyond it fails the link (recreated).
    #[key(default = 1000, unit = "messages", min = 1)]
    pub hwm: i32,
    /// Frames waiting for the link thread (the sender waits when full).
    #[key(default = 64, unit = "frames", min = 1)]
    pub out_queue: usize,
    /// Acks waiting for the sender (the link thread stops reading when full); raised to `transport.max_in_flight` when below it, so it never fills.
    #[key(default = 256, unit = "acks", min = 1)]
    pub ack_queue: usize,
    /// ZMTP PING interval.
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// An aggregator silent this long after a PING is disconnected (libzmq reconnects).
    #[key(default = Duration::from_secs(30), unit = "duration", min = Duration::from_millis(100), max = Duration::from_secs(6553))]
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// libzmq's first reconnect delay.
    #[key(default = Duration::from_millis(100), unit = "duration", min = Duration::from_millis(1))]
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// libzmq's longest reconnect delay (it doubles up to this).
    #[key(default = Duration::from_secs(5), unit = "duration", min = Duration::from_millis(1))]
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

/// `[transport.curve]`: CURVE (encryption and authentication, libzmq over libsodium) on the
/// ZeroMQ link. On when the aggregator's public key is set; then this agent's public and secret
/// keys are needed too. Each key is 40 characters Z85 or 64 hex digits, from a file (as
/// `fleetset-aggregator pki issue-agent` writes them) or inline; files are read at every
/// (re)connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct CurveConfig {
    /// The aggregator's public key (pinned: a server without its secret key fails the handshake); `curve_server.public` of `pki`.
    pub server_public_file: Option<PathBuf>,
    /// The aggregator's public key inline (instead of `server_public_file`).
    pub server_public: Option<String>,
    /// This agent's public key (`curve_client.public` of `pki issue-agent`; listed in the aggregator's allow file).
    pub public_file: Option<PathBuf>,
    /// This agent's public key inline (instead of `public_file`).
    pub public: Option<String>,
    /// This agent's secret key (`curve_client.secret` of `pki issue-agent`).
    pub secret_file: Option<PathBuf>,
    /// This agent's secret key inline (instead of `secret_file`).
    #[key(secret)]
    pub secret: Option<String>,
}

/// A CURVE client's three keys, 32 bytes each (`Debug` hides the secret).
#[derive(Clone)]
pub struct CurveKeys {
    /// The aggregator's public key.
    pub server: [u8; 32],
    /// This agent's public key.
    pub public: [u8; 32],
    /// This agent's secret key.
    pub secret: [u8; 32],
}

impl std::fmt::Debug for CurveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurveKeys(***)")
    }
}

/// A 32-byte key from text: 40 characters Z85 or 64 hex digits.
fn parse_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = match text.len() {
        40 => zmq::z85_decode(text).ok()?,
        64 => hex::decode(text).ok()?,
        _ => return None,
    };
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// One key from its file or inline value. Errors name the key (and file), never its content.
fn key(name: &str, file: Option<&Path>, value: Option<&str>) -> Result<[u8; 32], String> {
    let text = match (file, value) {
        (Some(path), None) => std::fs::read_to_string(path)
            .map_err(|e| format!("transport.curve.{name}_file {}: {e}", path.display()))?,
        (None, Some(v)) => v.to_string(),
        (Some(_), Some(_)) => {
            return Err(format!(
                "transport.curve: set {name}_file or {name}, not both"
            ))
        }
        (None, None) => {
            return Err(format!(
                "transport.curve.{name}_file (or {name}) is not set"
            ))
        }
    };
    parse_key(&text).ok_or_else(|| {
        format!("transport.curve.{name}: not a CURVE key (40 characters Z85 or 64 hex digits)")
    })
}

impl CurveConfig {
    /// Whether CURVE is on (the aggregator's public key is set).
    pub fn enabled(&self) -> bool {
        self.server_public_file.is_some() || self.server_public.is_some()
    }

    /// With CURVE on, the first key (`server_public`, `public`, `secret`) that is unset or
    /// set both as a file and inline; None when all are fine or CURVE is off.
    pub fn incomplete(&self) -> Option<&'static str> {
        if !self.enabled() {
            return None;
        }
        [
            (
                "server_public",
                self.server_public_file.is_some(),
                self.server_public.is_some(),
            ),
            ("public", self.public_file.is_some(), self.public.is_some()),
            ("secret", self.secret_file.is_some(), self.secret.is_some()),
        ]
        .into_iter()
        .find(|(_, file, inline)| file == inline)
        .map(|(name, _, _)| name)
    }

    /// The keys, read now; None when CURVE is off. Errors name the key that is missing or bad.
    pub fn keys(&self) -> Result<Option<CurveKeys>, String> {
        if !self.enabled() {
            return Ok(None);
        }
        Ok(Some(CurveKeys {
            server: key(
                "server_public",
                self.server_public_file.as_deref(),
                self.server_public.as_deref(),
            )?,
            public: key(
                "public",
                self.public_file.as_deref(),
                self.public.as_deref(),
            )?,
            secret: key(
                "secret",
                self.secret_file.as_deref(),
                self.secret.as_deref(),
            )?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_files_or_values_and_errors_without_secrets() {
        let server = zmq::CurveKeyPair::new().unwrap();
        let me = zmq::CurveKeyPair::new().unwrap();
        let dir = std::env::temp_dir().join(format!("curve-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("curve_client.secret");
        std::fs::write(
            &secret_file,
            zmq::z85_encode(&me.secret_key).unwrap() + "\n",
        )
        .unwrap();
        let mut cfg = CurveConfig::default();
        assert!(cfg.keys().unwrap().is_none());
        cfg.server_public = Some(zmq::z85_encode(&server.public_key).unwrap());
        cfg.public = Some(hex::encode(me.public_key));
        let e = cfg.keys().unwrap_err();
        assert!(e.contains("transport.curve.secret_file"), "{e}");
        cfg.secret = Some("s3cr3t-but-not-a-key".into());
        let e = cfg.keys().unwrap_err();
        assert!(
            e.contains("transport.curve.secret:") && !e.contains("s3cr3t"),
            "{e}"
        );
        cfg.secret = None;
        cfg.secret_file = Some(secret_file);
        let k = cfg.keys().unwrap().unwrap();
        assert_eq!(
            (k.server, k.public, k.secret),
            (server.public_key, me.public_key, me.secret_key)
        );
        assert_eq!(format!("{k:?}"), "CurveKeys(***)");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
