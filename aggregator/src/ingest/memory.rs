//! The memory limiter (like the OpenTelemetry Collector's `memory_limiter`): above
//! `ingest.memory_limit_bytes` of resident memory, new frames and OTLP Exports are refused
//! before verification, without an ack, with a retryable status (gRPC `UNAVAILABLE`), so
//! senders keep them and resend later.
//!
//! The measure is the process's resident set size from `/proc/self/statm` (field 2 × page
//! size), read at most every [`REFRESH`] (one `read` of a ~40-byte file); between reads the
//! last value is used. Where `/proc/self/statm` cannot be read (not Linux) the limiter is off.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest time a resident-size reading is reused.
pub const REFRESH: Duration = Duration::from_millis(100);

/// Page size assumed for `/proc/self/statm` (4 KiB on x86-64 and most aarch64 kernels).
const PAGE_BYTES: u64 = 4096;

/// A soft limit on the process's resident memory.
#[derive(Debug)]
pub struct MemoryLimit {
    /// The limit, bytes; 0 = off.
    limit_bytes: u64,
    /// Last reading, bytes.
    rss_bytes: AtomicU64,
    /// When it was read (None: never).
    read_at: Mutex<Option<Instant>>,
}

impl MemoryLimit {
    /// A limiter at `limit_bytes` of resident memory (0: off).
    pub fn new(limit_bytes: u64) -> MemoryLimit {
        MemoryLimit {
            limit_bytes,
            rss_bytes: AtomicU64::new(0),
            read_at: Mutex::new(None),
        }
    }

    /// True when the resident size (read at most [`REFRESH`] ago) is above the limit.
    pub fn exceeded(&self) -> bool {
        if self.limit_bytes == 0 {
            return false;
        }
        {
            let mut at = self.read_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_none_or(|t| t.elapsed() >= REFRESH) {
                *at = Some(Instant::now());
                if let Some(rss) = resident_bytes() {
                    self.rss_bytes.store(rss, Relaxed);
                }
            }
        }
        self.rss_bytes.load(Relaxed) > self.limit_bytes
    }
}

/// The process's resident set size, bytes, from `/proc/self/statm`; None if unreadable.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(PAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_at_zero_and_exceeded_below_the_resident_size() {
        assert!(!MemoryLimit::new(0).exceeded());
        assert!(resident_bytes().is_some_and(|b| b > 1));
        assert!(MemoryLimit::new(1).exceeded());
        assert!(!MemoryLimit::new(u64::MAX).exceeded());
    }
}
