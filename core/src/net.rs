//! Bounded TCP listeners: at most `max_connections` accepted connections open at once per
//! listener (a connection beyond it is accepted and closed at once, and reported as
//! [`ConnEvent::Refused`]), and each connection closed when it has sent nothing for
//! `idle_timeout` ([`ConnEvent::IdleClosed`]; HTTP/2 keepalive pings answered by a live peer
//! count as traffic). Used by the aggregator's gRPC and OTLP servers (as a tonic incoming
//! stream) and by `/metrics` `/healthz` (as an axum listener), so idle or slowloris sockets
//! cost a bounded number of descriptors and go away on their own.
//!
//! With `evict_oldest` (the `/metrics` `/healthz` listener) a full listener closes its oldest
//! connection to make room instead of refusing the new one (also reported as
//! [`ConnEvent::Refused`]): short requests such as health probes always get in, while sockets
//! held open by a slowloris client — always older than the probe — are the ones that go. The
//! gRPC listeners refuse instead, so a flood of new connections never displaces the agents'
//! long-lived streams.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a new connection waits for the slot of the connection it evicted.
const EVICT_WAIT: Duration = Duration::from_millis(500);

/// What a bounded listener reports (to count it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// A connection beyond `max_connections` was closed right after accept.
    Refused,
    /// A connection that sent nothing for `idle_timeout` was closed.
    IdleClosed,
}

/// Callback for [`ConnEvent`]s (called on the accepting or reading task; must be cheap).
pub type OnConnEvent = Arc<dyn Fn(ConnEvent) + Send + Sync>;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once at most (0 is taken as 1).
    pub max_connections: usize,
    /// A connection with nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// TCP keepalive probes after this much silence (None: the OS default, usually off).
    pub tcp_keepalive: Option<Duration>,
    /// When full, close the oldest connection for a new one (else refuse the new one).
    pub evict_oldest: bool,
}

/// A TCP listener bounded by [`ConnLimits`].
pub struct BoundedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: ConnLimits,
    on_event: OnConnEvent,
    /// With `evict_oldest`: the open connections' eviction tokens, oldest first (closed ones
    /// are cancelled by their drop and pruned at the next accept; at most `max_connections`
    /// live).
    open: Mutex<VecDeque<CancellationToken>>,
}

impl BoundedListener {
    /// Bounds `listener` by `limits`, reporting to `on_event`.
    pub fn new(listener: TcpListener, limits: ConnLimits, on_event: OnConnEvent) -> Self {
        BoundedListener {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            on_event,
            open: Mutex::default(),
        }
    }

    /// Asks the oldest open connection to close; false if there is none.
    fn evict_oldest(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|t| !t.is_cancelled());
        open.pop_front().map(|t| t.cancel()).is_some()
    }

    /// A slot for a new connection: a free one, or (with `evict_oldest`) the oldest
    /// connection's once it has closed (`true`: one was evicted); `None`: refuse.
    async fn slot(&self) -> Option<(OwnedSemaphorePermit, bool)> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some((p, false));
        }
        if !self.limits.evict_oldest || !self.evict_oldest() {
            return None;
        }
        let wait = self.slots.clone().acquire_owned();
        Some((
            tokio::time::timeout(EVICT_WAIT, wait).await.ok()?.ok()?,
            true,
        ))
    }

    /// The next connection within the limit (with TCP_NODELAY and keepalive set); the ones
    /// beyond it are closed and reported meanwhile. Errors: accept failed (e.g. EMFILE; the
    /// caller should pause before accepting again).
    pub async fn accept_bounded(&self) -> io::Result<(BoundedConn, std::net::SocketAddr)> {
        loop {
            let (stream, peer) = self.listener.accept().await?;
            let Some((permit, evicted)) = self.slot().await else {
                drop(stream);
                (self.on_event)(ConnEvent::Refused);
                continue;
            };
            if evicted {
                (self.on_event)(ConnEvent::Refused);
            }
            // Without NODELAY, Nagle + delayed ACK add ~40 ms to small messages.
            stream.set_nodelay(true)?;
            if let Some(t) = self.limits.tcp_keepalive {
                let ka = socket2::TcpKeepalive::new().with_time(t);
                socket2::SockRef::from(&stream).set_tcp_keepalive(&ka)?;
            }
            let idle = self.limits.idle_timeout;
            let evict = CancellationToken::new();
            if self.limits.evict_oldest {
                let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                open.retain(|t| !t.is_cancelled());
                open.push_back(evict.clone());
            }
            let conn = BoundedConn {
                stream,
                _permit: permit,
                idle,
                deadline: Box::pin(tokio::time::sleep(idle)),
                on_event: self.on_event.clone(),
                evicted: Box::pin(evict.clone().cancelled_owned()),
                evict,
            };
            return Ok((conn, peer));
        }
    }

    /// The accepted connections as a stream, for `tonic::transport::Server::serve_with_incoming`
    /// (accept errors pause 50 ms and are skipped, so the server never ends on EMFILE).
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<BoundedConn>> {
        futures::stream::unfold(self, |mut l| async move {
            let (conn, _) = axum::serve::Listener::accept(&mut l).await;
            Some((Ok(conn), l))
        })
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedConn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.accept_bounded().await {
                Ok(c) => return c,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// An accepted connection holding one of its listener's slots until dropped; reading fails
/// with `TimedOut` once nothing has been received for the idle timeout, and with
/// `ConnectionAborted` once the listener evicted it.
pub struct BoundedConn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    on_event: OnConnEvent,
    evicted: Pin<Box<WaitForCancellationFutureOwned>>,
    evict: CancellationToken,
}

impl Drop for BoundedConn {
    fn drop(&mut self) {
        // Marks this connection closed in its listener's eviction list.
        self.evict.cancel();
    }
}

impl AsyncRead for BoundedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.evicted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "evicted for a newer connection (listener full)",
            )));
        }
        match Pin::new(&mut me.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let next = Instant::now() + me.idle;
                me.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => match me.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    (me.on_event)(ConnEvent::IdleClosed);
                    let next = Instant::now() + me.idle;
                    me.deadline.as_mut().reset(next);
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle past its idle timeout",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for BoundedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for BoundedConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Whether `host` (an IP, `[v6]`, `localhost`, `*`, an interface name) is loopback only.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a `host:port` listen address is loopback only (127.0.0.0/8, `[::1]`, `localhost`).
pub fn is_loopback_addr(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(host, _)| is_loopback_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_connection_beyond_the_limit_is_closed_and_an_idle_one_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let limits = ConnLimits {
            max_connections: 1,
            idle_timeout: Duration::from_millis(300),
            tcp_keepalive: Some(Duration::from_secs(60)),
            evict_oldest: false,
        };
        let on_event: OnConnEvent = Arc::new(move |e| seen.lock().unwrap().push(e));
        let bl = Arc::new(BoundedListener::new(l, limits, on_event));
        let first = {
            let bl = bl.clone();
            tokio::spawn(async move {
                let (mut c, _) = bl.accept_bounded().await.unwrap();
                let mut buf = [0u8; 8];
                let t = Instant::now();
                let err = c.read(&mut buf).await.expect_err("idle timeout");
                (err.kind(), t.elapsed())
            })
        };
        let _c1 = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The second is refused while the first holds the only slot: closed by the server.
        let second = {
            let bl = bl.clone();
            tokio::spawn(async move { bl.accept_bounded().await.map(|_| ()) })
        };
        let mut c2 = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), c2.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        let (kind, after) = tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .expect("idle close in time")
            .unwrap();
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(after >= Duration::from_millis(250), "{after:?}");
        // The slot is free again: the next connection is accepted.
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("accepted in time")
            .unwrap();
        assert!(got.is_ok());
        let events = events.lock().unwrap().clone();
        assert_eq!(events, vec![ConnEvent::Refused, ConnEvent::IdleClosed]);
    }

    #[tokio::test]
    async fn a_full_evicting_listener_closes_its_oldest_connection_for_a_new_one() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let limits = ConnLimits {
            max_connections: 2,
            idle_timeout: Duration::from_secs(60),
            tcp_keepalive: None,
            evict_oldest: true,
        };
        let on_event: OnConnEvent = Arc::new(move |e| seen.lock().unwrap().push(e));
        let bl = Arc::new(BoundedListener::new(l, limits, on_event));
        // Each accepted connection is read by its own task until it fails; reports the error.
        let serve = |bl: Arc<BoundedListener>| {
            tokio::spawn(async move {
                let (mut c, _) = bl.accept_bounded().await.unwrap();
                let mut buf = [0u8; 8];
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) => return io::ErrorKind::UnexpectedEof,
                        Ok(_) => continue,
                        Err(e) => return e.kind(),
                    }
                }
            })
        };
        let oldest = serve(bl.clone());
        let _c1 = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = serve(bl.clone());
        let _c2 = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = serve(bl.clone());
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let kind = tokio::time::timeout(Duration::from_secs(5), oldest)
            .await
            .expect("oldest evicted in time")
            .unwrap();
        assert_eq!(kind, io::ErrorKind::ConnectionAborted);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !second.is_finished() && !third.is_finished(),
            "only the oldest goes"
        );
        assert_eq!(events.lock().unwrap().clone(), vec![ConnEvent::Refused]);
        second.abort();
        third.abort();
    }
}
