//! A doorbell: lets async code wake a thread that is blocked in `poll(2)` — e.g. in `zmq::poll`
//! on a libzmq socket plus [`Doorbell::fd`] — without blocking itself. It is a non-blocking Unix
//! socket pair: [`Ring::ring`] writes one byte (a full buffer means the bell is already ringing),
//! [`Doorbell::clear`] reads them all. Its cost is fixed (the kernel's socket buffer).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// The ringing side; cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Ring(Arc<UnixStream>);

/// The waiting side, polled by the thread.
#[derive(Debug)]
pub struct Doorbell(UnixStream);

/// A new bell. Errors: the socket pair cannot be made (out of file descriptors).
pub fn doorbell() -> std::io::Result<(Ring, Doorbell)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((Ring(Arc::new(a)), Doorbell(b)))
}

impl Ring {
    /// Wakes the waiting thread (at once if it is polling, else at its next poll).
    pub fn ring(&self) {
        // WouldBlock: the buffer is full of earlier rings, the thread will wake anyway.
        let _ = (&*self.0).write(&[1]);
    }
}

impl Doorbell {
    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Consumes the pending rings (call after the descriptor polled readable).
    pub fn clear(&self) {
        let mut buf = [0u8; 256];
        while matches!((&self.0).read(&mut buf), Ok(n) if n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn a_ring_is_readable_until_cleared() {
        let (ring, bell) = super::doorbell().unwrap();
        let mut buf = [0u8; 1];
        assert!((&bell.0).read(&mut buf).is_err(), "nothing before a ring");
        for _ in 0..100_000 {
            ring.ring(); // never blocks, even past the buffer
        }
        bell.clear();
        assert!((&bell.0).read(&mut buf).is_err(), "cleared");
    }
}
