//! HMAC keys of frames and acks (HMAC-SHA256, RFC 2104).
//!
//! - Per-agent keys: `K_agent = HMAC-SHA256(master, "fleetset agent key v1" ‖ agent_id)`
//!   ([`agent_key`]). The aggregator holds only the fleet master key and derives each frame's
//!   key from the frame header's `agent_id`, so a host holding its own key can sign only for
//!   itself: a frame for another agent signed with it fails `BAD_SIGNATURE`.
//! - A fleet-wide shared key ([`HmacKeys::Shared`]) is weaker: any holder can sign for any agent.
//! - Signed acks ([`sign_ack`], [`ack_verifies`]): `Ack.hmac_sha256 = HMAC-SHA256(K_agent,
//!   "fleetset ack v1" ‖ u32be(len(agent_id)) ‖ agent_id ‖ u64be(seq) ‖ i32be(status) ‖
//!   i32be(reason) ‖ u32be(len(sha)) ‖ sha)`, where `sha` is the acked frame header's
//!   `payload_sha256`: an ack verifies only for the one frame it answers, and only with the key
//!   of the agent it names. `detail` is not covered (text for humans).

use crate::pb;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The context string of [`agent_key`].
pub const AGENT_KEY_CONTEXT: &[u8] = b"fleetset agent key v1";

/// The context string of ack MACs ([`ack_mac`]).
pub const ACK_CONTEXT: &[u8] = b"fleetset ack v1";

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (RFC 2104 §2), so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// The per-agent HMAC key: `HMAC-SHA256(master, "fleetset agent key v1" ‖ agent_id)`, 32 bytes.
pub fn agent_key(master: &[u8], agent_id: &str) -> [u8; 32] {
    let mut m = hmac(master);
    m.update(AGENT_KEY_CONTEXT);
    m.update(agent_id.as_bytes());
    m.finalize().into_bytes().into()
}

/// Which HMAC keys a receiver verifies frames (and signs acks) with.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum HmacKeys {
    /// No keys: frames may be unsigned (a signature present is not checked); acks unsigned.
    #[default]
    None,
    /// One fleet-wide key for every agent (weaker: any holder can sign for any agent).
    Shared(Vec<u8>),
    /// Each agent's key derived from this fleet master key ([`agent_key`]).
    PerAgent {
        /// The fleet master key.
        master: Vec<u8>,
    },
}

impl std::fmt::Debug for HmacKeys {
    /// Never shows a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HmacKeys::None => "None",
            HmacKeys::Shared(_) => "Shared(***)",
            HmacKeys::PerAgent { .. } => "PerAgent(***)",
        })
    }
}

impl HmacKeys {
    /// Whether keys are in use (frames must be signed, acks are signed).
    pub fn in_use(&self) -> bool {
        !matches!(self, HmacKeys::None)
    }

    /// The key of `agent_id`'s frames and acks; None without keys.
    pub fn key_for(&self, agent_id: &str) -> Option<Vec<u8>> {
        match self {
            HmacKeys::None => None,
            HmacKeys::Shared(k) => Some(k.clone()),
            HmacKeys::PerAgent { master } => Some(agent_key(master, agent_id).to_vec()),
        }
    }
}

fn ack_hmac(key: &[u8], ack: &pb::Ack, payload_sha256: &[u8]) -> HmacSha256 {
    let mut m = hmac(key);
    m.update(ACK_CONTEXT);
    // Lengths are bounded by the frame size limit; saturating keeps the encoding total.
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    m.update(&len(ack.agent_id.len()));
    m.update(ack.agent_id.as_bytes());
    m.update(&ack.seq.to_be_bytes());
    m.update(&ack.status.to_be_bytes());
    m.update(&ack.reason.to_be_bytes());
    m.update(&len(payload_sha256.len()));
    m.update(payload_sha256);
    m
}

/// The MAC of `ack` answering the frame whose header has `payload_sha256` (module docs).
pub fn ack_mac(key: &[u8], ack: &pb::Ack, payload_sha256: &[u8]) -> Vec<u8> {
    ack_hmac(key, ack, payload_sha256)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Sets `ack.hmac_sha256` with `key` (none: left empty) for the frame with `payload_sha256`.
pub fn sign_ack(ack: &mut pb::Ack, key: Option<&[u8]>, payload_sha256: &[u8]) {
    if let Some(key) = key {
        ack.hmac_sha256 = ack_mac(key, ack, payload_sha256);
    }
}

/// Whether `ack` carries a valid MAC made with `key` for the frame with `payload_sha256`
/// (constant-time comparison). An unsigned ack never verifies.
pub fn ack_verifies(key: &[u8], ack: &pb::Ack, payload_sha256: &[u8]) -> bool {
    !ack.hmac_sha256.is_empty()
        && ack_hmac(key, ack, payload_sha256)
            .verify_slice(&ack.hmac_sha256)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{AckStatus, RejectReason};

    #[test]
    fn agent_key_is_the_documented_derivation() {
        let mut m = hmac(b"master");
        m.update(b"fleetset agent key v1web-01");
        let expected: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(agent_key(b"master", "web-01"), expected);
        assert_ne!(
            agent_key(b"master", "web-01"),
            agent_key(b"master", "web-02")
        );
    }

    #[test]
    fn a_signed_ack_verifies_only_for_its_frame_fields_and_key() {
        let sha = [7u8; 32];
        let mut ack = pb::Ack {
            agent_id: "a".into(),
            seq: 3,
            status: AckStatus::Committed as i32,
            ..Default::default()
        };
        assert!(!ack_verifies(b"k", &ack, &sha), "unsigned");
        sign_ack(&mut ack, Some(b"k"), &sha);
        assert!(ack_verifies(b"k", &ack, &sha));
        assert!(!ack_verifies(b"other", &ack, &sha), "other key");
        assert!(!ack_verifies(b"k", &ack, &[8u8; 32]), "other frame");
        for change in [
            |a: &mut pb::Ack| a.seq = 4,
            |a: &mut pb::Ack| a.agent_id = "b".into(),
            |a: &mut pb::Ack| a.status = AckStatus::Duplicate as i32,
            |a: &mut pb::Ack| a.reason = RejectReason::BadSignature as i32,
        ] {
            let mut a = ack.clone();
            change(&mut a);
            assert!(!ack_verifies(b"k", &a, &sha), "{a:?}");
        }
        // The detail is not covered.
        let mut a = ack.clone();
        a.detail = "x".into();
        assert!(ack_verifies(b"k", &a, &sha));
    }

    #[test]
    fn keys_show_no_secret_and_derive_per_agent() {
        let k = HmacKeys::PerAgent {
            master: b"m".to_vec(),
        };
        assert_eq!(format!("{k:?}"), "PerAgent(***)");
        assert_eq!(k.key_for("x"), Some(agent_key(b"m", "x").to_vec()));
        assert_eq!(
            HmacKeys::Shared(b"s".to_vec()).key_for("x"),
            Some(b"s".to_vec())
        );
        assert!(!HmacKeys::None.in_use());
    }
}
